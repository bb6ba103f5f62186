"""Training packs: per-video feature units packed into objects of hundreds of MB, and their reader.

The features stage writes one small shard per video (a few MB); at 15 M clips that is 1.5 M
objects, and a loader that opens each every epoch spends its time on requests. The pack step
(:mod:`mmvideos.stages.pack`) concatenates whole units into packs of about ``pack_mb``, and a
pack is still a plain POSIX tar of ``<clip_id>.npy`` members (the WebDataset layout, readable by
``tar``, ``webdataset`` or :func:`mmvideos.data.shards.iter_shard`), with one extra last member::

    __members__.parquet   clip_id, offset (of the clip's float16 array), n_seconds, frames,
                          mel_bins, dtype, digests (8-byte BLAKE2b of each 1-s slice, concatenated)

Its place and SHA-256 are in the pack's commit record and in ``packs.parquet`` (one row per pack:
:data:`PACK_COLUMNS`), so a reader fetches the member table with one ranged read, checks it, and
then reads just the drawn second of each clip (12,800 bytes), locally with a ``pread`` of the
mapped file or from ``gs://`` with ranged requests, and checks each second against its digest:
verification happens as the bytes are read, with no pass over the corpus before training.

Why a tar and not parquet or arrow: the loader reads one second out of each clip's array at a
known offset, which a tar stores uncompressed and contiguous; parquet pages would be decoded a
page at a time (hundreds of kB per sample). A tar also keeps the unit shards' bytes as they are,
so packing is a copy.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import math
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from mmvideos.data import storage
from mmvideos.data.storage import gcs
from mmvideos.features.store import ClipMeta, FeatureRecord, ShardFile, clip_meta, npy_members, tar_members

PACK = "pack.tar"
PACKS = "packs.parquet"
MEMBERS = "__members__"
DIGEST = 8  # bytes of BLAKE2b per 1-s slice
PACK_COLUMNS = ["key", "uri", "bytes", "sha256", "members_offset", "members_bytes", "members_sha256", "first_row",
                "rows", "train", "clips"]
MEMBER_COLUMNS = ["clip_id", "offset", "n_seconds", "frames", "mel_bins", "dtype", "digests"]
FIX = "delete that pack's unit folder (pack/<key[:2]>/<key>) in the data root and run pretrain again to rebuild it"


def second_digests(array: bytes | memoryview, n_seconds: int) -> bytes:
    """The 8-byte BLAKE2b digests of each of ``n_seconds`` equal slices of ``array``, concatenated."""
    view, size = memoryview(array), len(array) // max(n_seconds, 1)
    return b"".join(hashlib.blake2b(view[k * size:(k + 1) * size], digest_size=DIGEST).digest()
                    for k in range(n_seconds))


class _Bytes:
    """A unit shard's bytes, read the way :func:`npy_members` reads a :class:`ShardFile`."""

    def __init__(self, data: bytes, uri: str) -> None:
        self.data, self.uri = memoryview(data), uri

    def read(self, offset: int, size: int) -> bytes:
        return bytes(self.data[offset:offset + size])


class PackWriter:
    """Write a pack: the members of unit shards copied as they are, then the member table
    (:mod:`module docstring <mmvideos.features.packs>`). Deterministic: the same units give the
    same bytes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "wb")
        self._rows: list[dict] = []

    def add_unit(self, data: bytes, uri: str) -> dict[str, int]:
        """Append a unit shard's members (its tar without the end-of-archive blocks); ``{clip_id: n_seconds}``."""
        base, held, shard = self._fh.tell(), {}, _Bytes(data, uri)
        end = max((start + -(-size // tarfile.BLOCKSIZE) * tarfile.BLOCKSIZE for _, start, size, _ in tar_members(shard)),
                  default=0)  # the members' end: the end-of-archive blocks are left out
        for clip_id, offset, shape, dtype in npy_members(shard):
            if len(shape) != 3:
                raise ValueError(f"shard {uri}: clip {clip_id} is not [n_seconds, frames, mel_bins] but {shape}")
            size = math.prod(shape) * dtype.itemsize
            self._rows.append({"clip_id": clip_id, "offset": base + offset, "n_seconds": shape[0], "frames": shape[1],
                               "mel_bins": shape[2], "dtype": dtype.str,
                               "digests": second_digests(memoryview(data)[offset:offset + size], shape[0])})
            held[clip_id] = shape[0]
        if data[end:].strip(b"\0"):
            raise ValueError(f"shard {uri} holds members other than .npy arrays after byte {end}: not a feature unit")
        self._fh.write(memoryview(data)[:end])
        return held

    def abort(self) -> None:
        """Stop writing (the caller's scratch folder holds the partial pack)."""
        self._fh.close()

    def close(self) -> dict:
        """Write the member table as the last member, end the tar; its place:
        ``{members_offset, members_bytes, members_sha256, clips}``."""
        buf = io.BytesIO()
        pd.DataFrame(self._rows, columns=MEMBER_COLUMNS).to_parquet(buf, index=False)
        data = buf.getvalue()
        info = tarfile.TarInfo(f"{MEMBERS}.parquet")
        info.size, info.mtime, info.mode = len(data), 0, 0o644
        header = info.tobuf(tarfile.PAX_FORMAT)
        offset = self._fh.tell() + len(header)
        self._fh.write(header + data + bytes(-len(data) % tarfile.BLOCKSIZE) + bytes(2 * tarfile.BLOCKSIZE))
        self._fh.close()
        return {"members_offset": offset, "members_bytes": len(data),
                "members_sha256": hashlib.sha256(data).hexdigest(), "clips": len(self._rows)}


class RangeReader:
    """Byte ranges of a pack: a local file mapped into memory, or ranged requests to a ``gs://`` object."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._local = None if storage.is_gcs(uri) else ShardFile(uri)
        if self._local is None:
            bucket, key = storage.split_gcs(uri)
            self._blob = storage.gcs_client().bucket(bucket).blob(key)

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset``; ``ValueError`` naming the pack when fewer are there."""
        if self._local is not None:
            data = self._local.read(offset, size)
        else:
            data = storage.retrying(f"reading {self.uri}", lambda: self._blob.download_as_bytes(
                start=offset, end=offset + size - 1, retry=gcs.no_library_retry(), timeout=gcs.attempt_timeout()))
        if len(data) != size:
            raise ValueError(f"pack {self.uri}: {size} bytes at {offset} run past its end (a truncated pack); {FIX}")
        return data

    def read_many(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Many ``(offset, size)`` ranges: from ``gs://`` 16 requests at a time."""
        if self._local is not None or len(ranges) < 2:
            return [self.read(o, s) for o, s in ranges]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            return list(pool.map(lambda r: self.read(*r), ranges))

    def close(self) -> None:
        if self._local is not None:
            self._local.close()

    def __enter__(self) -> RangeReader:
        return self

    def __exit__(self, *_) -> None:
        self.close()


@dataclasses.dataclass(frozen=True)
class PackedClip:
    """A clip of a pack, as the loader needs it: where its array is, its shape, digests and labels."""

    clip_id: str
    offset: int
    shape: tuple[int, int, int]
    dtype: np.dtype
    digests: bytes
    meta: ClipMeta

    def check(self, uri: str, second: int, data: bytes | memoryview) -> None:
        """``ValueError`` naming the pack, clip and second when ``data`` is not what the pack step wrote."""
        if hashlib.blake2b(data, digest_size=DIGEST).digest() != self.digests[second * DIGEST:(second + 1) * DIGEST]:
            raise ValueError(f"pack {uri} is corrupt: second {second} of clip {self.clip_id} is not what the pack "
                             f"step (mmvideos.stages.pack) wrote; {FIX}")


class PackSet:
    """The packs of a features folder (``packs.parquet``, O(packs) rows) and the index they label from.

    A pack's clips are a row range of ``index.parquet`` (``first_row``, ``rows``); their labels are
    read with those rows when the pack is, so a process holds the pack table and one pack's labels,
    never the corpus' (:meth:`clips`).
    """

    def __init__(self, packs: pd.DataFrame, index_path: str | Path) -> None:
        self.packs = packs.reset_index(drop=True)
        self.index_path = str(index_path)
        self._index: pq.ParquetFile | None = None
        self._starts: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_index": None, "_starts": None}  # each data-loader worker opens its own

    @classmethod
    def read(cls, folder: str | Path) -> PackSet:
        """The packs a pack step wrote to ``folder`` (``packs.parquet``, ``index.parquet``)."""
        return cls(pd.read_parquet(Path(folder) / PACKS), Path(folder) / "index.parquet")

    @property
    def uris(self) -> list[str]:
        return self.packs["uri"].tolist()

    @property
    def train_counts(self) -> list[int]:
        return [int(n) for n in self.packs["train"]]

    def index_rows(self, first: int, count: int, columns: list[str] | None = None) -> pd.DataFrame:
        """Rows ``first .. first + count - 1`` of the index, reading only the row groups they span."""
        if self._index is None:  # opened lazily: in each data-loader worker, not pickled to it
            self._index = pq.ParquetFile(self.index_path)
            sizes = [self._index.metadata.row_group(g).num_rows for g in range(self._index.num_row_groups)]
            self._starts = np.concatenate([[0], np.cumsum(sizes)])
        if count == 0:
            return pd.DataFrame(columns=columns)
        groups = list(range(int(np.searchsorted(self._starts, first, "right")) - 1,
                            int(np.searchsorted(self._starts, first + count - 1, "right"))))
        table = self._index.read_row_groups(groups, columns=columns)
        return table.slice(first - int(self._starts[groups[0]]), count).to_pandas()

    def members(self, i: int, reader: RangeReader) -> pd.DataFrame:
        """Pack ``i``'s member table, read with one ranged request and checked against its SHA-256."""
        row = self.packs.iloc[i]
        data = reader.read(int(row["members_offset"]), int(row["members_bytes"]))
        if hashlib.sha256(data).hexdigest() != row["members_sha256"]:
            raise ValueError(f"pack {row['uri']} is corrupt: its member table is not what the pack step "
                             f"(mmvideos.stages.pack) wrote; {FIX}")
        return pd.read_parquet(io.BytesIO(data))

    def clips(self, i: int, reader: RangeReader, split: str | None = "train") -> list[PackedClip]:
        """The indexed clips of pack ``i`` (of ``split``; ``None``: all), in the pack's order."""
        row = self.packs.iloc[i]
        meta = clip_meta(self.index_rows(int(row["first_row"]), int(row["rows"])))
        members = self.members(i, reader)
        missing = set(meta) - set(members["clip_id"])
        if missing:
            raise ValueError(f"pack {row['uri']} does not hold clip {sorted(missing)[0]} (and {len(missing) - 1} more) "
                             f"that index.parquet places in it: the packs and the index disagree; {FIX}")
        out = []
        for m in members.itertuples(index=False):
            entry = meta.get(m.clip_id)
            if entry is None or (split is not None and entry.split != split):
                continue
            out.append(PackedClip(m.clip_id, int(m.offset), (int(m.n_seconds), int(m.frames), int(m.mel_bins)),
                                  np.dtype(m.dtype), bytes(m.digests), entry))
        return out


def read_clip(reader: RangeReader, clip: PackedClip) -> np.ndarray:
    """A whole clip's log-mel ``[n_seconds, frames, mel_bins]``, every second checked."""
    size = clip.dtype.itemsize * clip.shape[1] * clip.shape[2]
    data = reader.read(clip.offset, size * clip.shape[0])
    for second in range(clip.shape[0]):
        clip.check(reader.uri, second, memoryview(data)[second * size:(second + 1) * size])
    return np.frombuffer(data, dtype=clip.dtype).reshape(clip.shape)


def iter_packed(packs: PackSet, split: str | None = None, limit: int = 0) -> Iterator[FeatureRecord]:
    """The clips of ``split`` (``None``: all) as :class:`FeatureRecord`, pack by pack (validation's reader).

    Packs without a clip of that split are not opened (the split counts are in the pack table).
    """
    n = 0
    for i, uri in enumerate(packs.uris):
        row = packs.packs.iloc[i]
        if split == "train" and not row["train"] or split == "val" and row["rows"] == row["train"]:
            continue
        with RangeReader(uri) as reader:
            for clip in packs.clips(i, reader, split):
                yield FeatureRecord(clip.clip_id, read_clip(reader, clip), clip.meta.visual, clip.meta.audio,
                                    clip.meta.split, clip.meta.fold)
                n += 1
                if limit and n >= limit:
                    return
