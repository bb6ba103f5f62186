"""The feature folder: an index of log-mel shards (in the data root) with the labels, and its reader.

The ``features`` stage (:func:`mmvideos.stages.features.extract_features`) is the one writer;
pre-training, the report and the benchmarks read it through :func:`iter_features`.

Feature shards live in the data root, one per clip unit (a video's clips), keyed by the audio
shard's content and the front end (:mod:`mmvideos.data.dataroot`)::

    features/<k[:2]>/<k>/features.tar   <clip_id>.npy  float16 [n_seconds, frames, 64] log-mel:
                                        one slice per non-overlapping 1-s frame (frames = 100
                                        with the ``paper`` preset); NumPy .npy, little-endian

The feature folder (a KFP artifact, a DVC out) holds only tables::

    index.parquet            clip_id, shard (its features.tar, relative to the data root), n_seconds, split, fold,
                             visual, audio (int vocabulary indices, in the label table's order)
    manifest.parquet         the feature shards (mmvideos.data.dataroot.MANIFEST_COLUMNS)
    vocabulary.parquet       merge_labels' vocabulary, copied: index (0..V-1), id, name,
                             modality, count; the label indices point into it
    config.json              the front end: preset, sample_rate, window (samples and type),
                             hop, n_fft, mel_bins, fmin/fmax, log_offset, pad, frames_per_second
    summary.json             clips, audio seconds, skipped clips
    run.json                 this run's shards reused and computed, seconds (not tracked: mmvideos.data.runrecord)

Labels are not in the shards, so new labels reuse every feature shard. A clip's seconds are
transformed independently (each 1-s frame is reflect-padded on its own), so any single slice
``mel[k]`` is exactly what a model sees at training time; a trailing partial second is dropped
and clips under one second are left out. Shards are deterministic (byte-identical when the stage
is re-run on the same input).

The training loader does not decode whole clips: :func:`npy_members` walks a shard's tar
headers (a 512-byte header and the 128-byte ``.npy`` header per clip) and gives each clip's
array offset and shape, so a sample reads just its own second (``12,800`` bytes) with one
``pread`` from a local shard, or slices it out of a ``gs://`` shard read in one request
(:class:`ShardFile`).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import itertools
import json
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mmvideos.data import shards, storage

FEATURES = "features.tar"
INDEX = "index.parquet"
VOCABULARY = "vocabulary.parquet"
CONFIG = "config.json"


@dataclasses.dataclass(frozen=True)
class FeatureRecord:
    """One clip of the feature folder.

    Attributes:
        clip_id: the clip stage's id (``<video_id>-<k>``).
        mel: float16 ``[n_seconds, 100, 64]`` log-mel, one slice per 1-s frame.
        visual: int64 vocabulary indices of the clip's visual labels.
        audio: int64 vocabulary indices of the clip's audio labels.
        split: ``"train"`` or ``"val"``.
        fold: the video's fold (``hash(video id) mod num_folds``).
    """

    clip_id: str
    mel: np.ndarray
    visual: np.ndarray
    audio: np.ndarray
    split: str
    fold: int


@dataclasses.dataclass(frozen=True)
class ClipMeta:
    """What the index says of one clip: its labels, split and fold."""

    visual: np.ndarray
    audio: np.ndarray
    split: str
    fold: int


def encode_mel(mel: np.ndarray) -> dict[str, bytes]:
    """A clip's log-mel -> its shard member ``{"npy": ...}`` (deterministic bytes)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(mel, dtype="<f2"), allow_pickle=False)
    return {"npy": buf.getvalue()}


def decode_record(clip_id: str, members: dict[str, bytes], meta: ClipMeta) -> FeatureRecord:
    """Shard members of one clip and its index entry -> a :class:`FeatureRecord`."""
    return FeatureRecord(clip_id=clip_id, mel=np.load(io.BytesIO(members["npy"]), allow_pickle=False),
                         visual=meta.visual, audio=meta.audio, split=meta.split, fold=meta.fold)


def clip_meta(index: pd.DataFrame) -> dict[str, ClipMeta]:
    """``{clip_id: ClipMeta}`` of an index table."""
    return {c: ClipMeta(np.asarray(v, dtype=np.int64), np.asarray(a, dtype=np.int64), str(s), int(f))
            for c, v, a, s, f in zip(index["clip_id"], index["visual"], index["audio"], index["split"], index["fold"])}


def read_index(features_dir: str | Path, root: str | None = None) -> pd.DataFrame:
    """The clip index (``index.parquet``) of a feature folder. It names shards relative to a data
    root (a synthetic set by absolute URIs): with ``root`` they are resolved against it (an error
    for a relative one when ``root`` is ``""``), without it they are as written."""
    from mmvideos.data.dataroot import DataRoot, resolve

    with storage.local_copy(storage.join(features_dir, INDEX)) as path:
        index = pd.read_parquet(path)
    if root is None:
        return index
    return index.assign(shard=[resolve(DataRoot(root) if root else None, u) for u in index["shard"]])


def read_vocabulary(features_dir: str | Path) -> pd.DataFrame:
    """The label vocabulary (``index, id, name, modality, count``) the label indices point into."""
    with storage.local_copy(storage.join(features_dir, VOCABULARY)) as path:
        return pd.read_parquet(path)


def read_feature_config(features_dir: str | Path) -> dict:
    """The front-end settings the features were computed with (``config.json``)."""
    with storage.local_copy(storage.join(features_dir, CONFIG)) as path:
        return json.loads(Path(path).read_text())


def iter_features(features_dir: str | Path, split: str | None = None,
                  shuffle_shards_seed: int | None = None, limit: int = 0, root: str | None = None) -> Iterator[FeatureRecord]:
    """Stream the clips of a feature folder (shards local or ``gs://``), one shard at a time.

    Args:
        features_dir: the ``features`` stage's output folder.
        split: ``"train"`` or ``"val"`` to keep only that split (shards without a clip of it are
            not opened); ``None`` for every clip.
        shuffle_shards_seed: visit the shards in an order permuted by this seed (clips keep
            their order within a shard); ``None`` visits them in index order.
        limit: stop after this many clips (0: no limit).
        root: the data root the index's shards are read from (:func:`read_index`).

    Yields:
        :class:`FeatureRecord` objects; only the current clip is held in memory.
    """
    index = read_index(features_dir, root or "")
    if split is not None:
        index = index[index["split"] == split]
    uris = list(dict.fromkeys(index["shard"]))
    if shuffle_shards_seed is not None:
        order = np.random.default_rng(shuffle_shards_seed).permutation(len(uris))
        uris = [uris[i] for i in order]
    records = iter_records(uris, clip_meta(index), split)
    yield from itertools.islice(records, limit) if limit else records


def iter_records(shard_uris: list[str], meta: dict[str, ClipMeta], split: str | None = None) -> Iterator[FeatureRecord]:
    """The indexed clips of ``split`` (``None``: all) in ``shard_uris``, in order, decoding only those kept.

    A clip is kept when ``meta`` (the index) names it with that split.
    """
    for uri in shard_uris:
        for clip_id, members in shards.iter_shard(uri):
            entry = meta.get(clip_id)
            if entry is None or (split is not None and entry.split != split):
                continue
            yield decode_record(clip_id, members, entry)


_BLOCK = 512  # tar block size
_NPY_HEADER = 128  # np.save's header for our arrays (read together with the tar header)


class ShardFile:
    """Random access to one shard: a local file mapped into memory, or a ``gs://`` object read whole."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        if storage.is_gcs(uri):
            self._map, self._data = None, memoryview(storage.read_bytes(uri))
        else:
            with open(uri, "rb") as f:  # the mapping outlives the descriptor
                self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(f.fileno()).st_size else None
            self._data = memoryview(self._map) if self._map is not None else memoryview(b"")

    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at the end of the shard)."""
        return bytes(self._data[offset:offset + size])

    def read_into(self, buffer: memoryview, offset: int) -> None:
        """Fill ``buffer`` (a writable byte view) from ``offset``; ``ValueError`` past the end.

        From a local shard this copies only the pages the slice spans out of the page cache.
        """
        size = buffer.nbytes
        if offset + size > len(self._data):
            raise ValueError(f"{self.uri}: {size} bytes at {offset} run past the end (truncated shard)")
        buffer[:] = self._data[offset:offset + size]

    def close(self) -> None:
        """Release the mapping (or the object's bytes)."""
        self._data.release()
        if self._map is not None:
            self._map.close()
            self._map = None

    def __enter__(self) -> ShardFile:
        return self

    def __exit__(self, *_) -> None:
        self.close()


def parse_npy_header(raw: bytes) -> tuple[int, tuple[int, ...], np.dtype]:
    """``.npy`` header bytes (and possibly more) -> (the header's length, the array's shape, dtype)."""
    buf = io.BytesIO(raw)
    version = np.lib.format.read_magic(buf)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = read_header(buf)
    if fortran:
        raise ValueError("Fortran-ordered arrays are not feature records")
    return buf.tell(), shape, dtype


_npy_header = functools.lru_cache(maxsize=64)(parse_npy_header)  # the 128-byte headers repeat


def _pax_path(data: bytes) -> str | None:
    """The ``path`` record of a PAX extended header (``"<len> path=<name>\n"`` records)."""
    for record in data.split(b"\n"):
        _, _, field = record.partition(b" ")
        if field.startswith(b"path="):
            return field[5:].decode()
    return None


def tar_members(shard: ShardFile) -> Iterator[tuple[str, int, int, bytes]]:
    """Each file member of a shard: ``(name, offset of its data, its size, the data's first 128 bytes)``.

    A minimal tar reader: it reads the 512-byte header of each member (with the first bytes of
    its payload) and skips the payload, so a shard of ``n`` members costs ``n`` small reads. Only
    the ustar and PAX forms that :class:`mmvideos.data.shards.ShardWriter` writes are understood;
    anything else raises ``ValueError``.
    """
    offset, long_name = 0, None
    while True:
        head = shard.read(offset, _BLOCK + _NPY_HEADER)
        if len(head) < _BLOCK or not head[:_BLOCK].strip(b"\0"):
            return  # end of archive (two zero blocks) or a truncated tail
        try:
            size = int(head[124:136].strip(b"\0 ") or b"0", 8)
        except ValueError:
            raise ValueError(f"{shard.uri}: not a tar header at byte {offset}") from None
        kind, data = head[156:157], offset + _BLOCK
        if kind in (b"x", b"g"):
            long_name = _pax_path(shard.read(data, size)) if kind == b"x" else long_name
        elif kind in (b"0", b"\0"):
            yield long_name or head[:100].rstrip(b"\0").decode(), data, size, head[_BLOCK:]
            long_name = None
        offset = data + -(-size // _BLOCK) * _BLOCK


def npy_members(shard: ShardFile) -> Iterator[tuple[str, int, tuple[int, ...], np.dtype]]:
    """Each ``<key>.npy`` member of a shard: ``(key, offset of its array data, shape, dtype)``,
    from its tar and ``.npy`` headers alone (:func:`tar_members`), so a shard of ``n`` clips costs
    ``n`` small reads."""
    for name, data, size, raw in tar_members(shard):
        key, _, suffix = name.partition(".")
        if suffix != "npy":
            continue
        if raw[:6] != b"\x93NUMPY":
            raise ValueError(f"{shard.uri}: member {name} is not a .npy array")
        if raw[6] == 1 and int.from_bytes(raw[8:10], "little") + 10 == _NPY_HEADER:
            length, shape, dtype = _npy_header(raw)
        else:  # another header size: parse it from the payload's first bytes
            length, shape, dtype = parse_npy_header(shard.read(data, min(size, 65536)))
        yield key, data + length, shape, dtype
