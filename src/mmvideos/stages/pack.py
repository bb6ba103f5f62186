"""The pack step: a features folder's per-video units -> training packs of about ``pack_mb`` each.

Run at pre-training start-up (:func:`mmvideos.training.loop.pretrain`, once, by rank 0); the
format and reader are :mod:`mmvideos.features.packs`.

Which units share a pack. The index (``index.parquet``, sorted by clip id, so a video's clips
are contiguous) is walked in row batches and a pack closes after a unit when a hash of that
unit's content falls under ``unit_bytes / (pack_mb MB)`` (or when the pack reaches four times
the target): content-defined boundaries, as rsync and restic cut files. The expected pack is
``pack_mb``, and a new or changed video moves at most the boundaries around it, so a feature set
that grew by a day's videos re-packs a few packs and reuses the rest. A pack is a unit of the
data root keyed by the SHA-256s of its feature units (:func:`mmvideos.data.dataroot.unit_key`):
written once per feature-set version, never per run or per rank; labels are not in it, so new
labels reuse every pack. A pack's clips are a row range of the index, which is how the loader
finds their labels.

Checks. Each feature unit is hashed as it is read for packing and must match its manifest's
SHA-256, and hold every clip the index names with the seconds it names: a damaged unit is an
error naming it and the features stage. A reused pack is checked as the loader reads it.

Memory: the index is read a row batch at a time; the step holds the features manifest's unit
hashes (64-bit keys and 32-byte digests, about 60 bytes a unit, so ~90 MB at 15 M clips), the
pack table (O(packs)) and one pack's units' bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from mmvideos.data import dataroot, storage, tables
from mmvideos.data.atomic import atomic_path, write_json, write_parquet
from mmvideos.data.dataroot import DataRoot, unit_key
from mmvideos.features.packs import PACK, PACK_COLUMNS, PACKS, PackWriter
from mmvideos.features.store import FEATURES, INDEX

log = logging.getLogger(__name__)

MB = 1 << 20
#: A pack closes at this many times its target, whatever the content-defined boundaries say.
MAX_FACTOR = 4
_FIX = "delete that unit's folder in the data root and run the features stage again to rebuild it"


@dataclasses.dataclass(frozen=True)
class PackConfig:
    """``params.yaml: pretrain.pack_mb``: the target size of a training pack, in MB (2**20 bytes)."""

    pack_mb: float = 512.0

    def __post_init__(self) -> None:
        if not self.pack_mb > 0:
            raise ValueError(f"pack_mb must be > 0, got {self.pack_mb}")


@dataclasses.dataclass
class _Unit:
    uri: str
    sha256: str
    bytes: int
    first_row: int
    n_seconds: dict[str, int]
    train: int


def _uri_key(uri: str) -> int:
    return int.from_bytes(hashlib.blake2b(uri.encode(), digest_size=8).digest(), "little")


def cut_after(sha256: str, size: int, target: int) -> bool:
    """A content-defined boundary after a unit: the unit's hash, as a fraction of 2**64, under
    ``size / target`` (so boundaries come once per ``target`` bytes on average)."""
    return int(sha256[:16], 16) < (size / target) * 2 ** 64


class _Manifest:
    """The features manifest's unit hashes and sizes, compactly: ``uri -> (sha256, bytes)``."""

    def __init__(self, features_dir: str) -> None:
        rows = dataroot.read_manifest(features_dir)
        rows = rows[rows["file"] == FEATURES]
        self.folder = features_dir
        self._row = {_uri_key(u): i for i, u in enumerate(rows["uri"])}
        # [n, 32] bytes, not numpy's "S32", which drops a digest's trailing zero bytes ("" when none was recorded)
        self._sha = np.frombuffer(b"".join(bytes.fromhex(s or "0" * 64) for s in rows["sha256"]), np.uint8).reshape(-1, 32)
        self._has_sha = np.array([bool(s) for s in rows["sha256"]], bool)
        self._bytes = rows["bytes"].to_numpy(np.int64)
        self._used = np.zeros(len(rows), bool)

    def take(self, uri: str) -> tuple[str, int]:
        i = self._row.get(_uri_key(uri))
        if i is None:
            raise ValueError(f"{storage.join(self.folder, INDEX)}: shard {uri} is not in the manifest of {self.folder}: "
                             "the index and the shards disagree; run the features stage again")
        if self._used[i]:
            raise ValueError(f"{storage.join(self.folder, INDEX)}: the clips of shard {uri} are not contiguous in the "
                             "index (it is sorted by clip id, a video's clips together); run the features stage again")
        if not self._has_sha[i]:
            raise ValueError(f"{storage.join(self.folder, dataroot.MANIFEST)}: shard {uri} has no SHA-256, which keys "
                             "its pack and checks its bytes; run the features stage again")
        self._used[i] = True
        return self._sha[i].tobytes().hex(), int(self._bytes[i])


def _units(index_path: Path, manifest: _Manifest, batch_rows: int = 65536) -> Iterator[_Unit]:
    """The feature units in index order, each with its row range and training clips."""
    current: _Unit | None = None
    row = 0
    for batch in tables.read_batches(index_path, batch_rows, ["clip_id", "shard", "n_seconds", "split"]):
        for clip_id, uri, n, split in zip(*(batch.column(c).to_pylist() for c in ("clip_id", "shard", "n_seconds",
                                                                                   "split"))):
            if current is None or uri != current.uri:
                if current is not None:
                    yield current
                current = _Unit(uri, *manifest.take(uri), first_row=row, n_seconds={}, train=0)
            current.n_seconds[clip_id] = int(n)
            current.train += split == "train"
            row += 1
    if current is not None:
        yield current


def _groups(units: Iterator[_Unit], target: int) -> Iterator[list[_Unit]]:
    group: list[_Unit] = []
    size = 0
    for unit in units:
        group.append(unit)
        size += unit.bytes
        if cut_after(unit.sha256, unit.bytes, target) or size >= MAX_FACTOR * target:
            yield group
            group, size = [], 0
    if group:
        yield group


def _add(writer: PackWriter, unit: _Unit, units_root: DataRoot | None) -> None:
    """Append one feature unit to a pack, checked against its manifest row and the index."""
    try:
        data = storage.read_bytes(dataroot.resolve(units_root, unit.uri))
    except FileNotFoundError:
        where = f" is not in the data root {units_root.uri}: it is made by the `features` stage" if units_root else " is missing"
        raise FileNotFoundError(f"the features unit {unit.uri} listed in the features manifest{where}; {_FIX}") from None
    if hashlib.sha256(data).hexdigest() != unit.sha256:
        raise ValueError(f"shard {unit.uri} is corrupt: its SHA-256 is not the one the features stage recorded when "
                         f"it wrote it; {_FIX}")
    held = writer.add_unit(data, unit.uri)
    wrong = [c for c, n in unit.n_seconds.items() if held.get(c) != n]
    if wrong:
        raise ValueError(f"shard {unit.uri} does not hold what the index says: clip {wrong[0]} (and "
                         f"{len(wrong) - 1} more) differs; {_FIX}")


def _pack(group: list[_Unit], scratch: Path, units_root: DataRoot | None) -> tuple[dict, dict[str, Path]]:
    """Copy the units' clips into one pack, checking each unit on the way (module docstring)."""
    writer = PackWriter(scratch / PACK)
    try:
        for unit in group:
            _add(writer, unit, units_root)
    except BaseException:
        writer.abort()
        raise
    return writer.close(), {PACK: scratch / PACK}


def pack_features(features_dir: str | Path, out_dir: str | Path, root: DataRoot,
                  cfg: PackConfig = PackConfig(), units_root: str | None = None) -> dict:
    """Pack a features folder's units into training packs in ``root``; the pack table into ``out_dir``.

    ``units_root`` is the data root the features manifest names its units in (relative to it;
    ``None`` only for a folder that names them by absolute URIs, a synthetic set).

    ``out_dir`` gets ``packs.parquet`` (:data:`mmvideos.features.packs.PACK_COLUMNS`), a copy of
    ``index.parquet`` (the packs' labels, by row range) and ``summary.json``; returns the summary.
    """
    features_dir, out_dir = str(features_dir), Path(out_dir)
    target = int(cfg.pack_mb * MB)
    with storage.local_copy(storage.join(features_dir, INDEX)) as path, atomic_path(out_dir / INDEX) as tmp:
        shutil.copyfile(path, tmp)
    groups: list[dict] = []

    def keyed() -> Iterator[tuple[str, list[_Unit]]]:
        for group in _groups(_units(out_dir / INDEX, _Manifest(features_dir)), target):
            groups.append({"first_row": group[0].first_row, "rows": sum(len(u.n_seconds) for u in group),
                           "train": sum(u.train for u in group)})
            yield unit_key("pack", units=[u.sha256 for u in group]), group

    source = DataRoot(units_root) if units_root else None
    # a reused pack's bytes are checked as the loader reads them (every second against the pack's
    # digests), so reuse checks its commit and sizes only: no pass over every pack at start-up
    records, counts, _ = root.map_units("pack", keyed(), functools.partial(_pack, units_root=source), contents=False)
    table = pd.DataFrame([{"key": r["key"], "uri": r["files"][PACK]["uri"], "bytes": r["files"][PACK]["bytes"],
                           "sha256": r["files"][PACK]["sha256"], "members_offset": r["members_offset"],
                           "members_bytes": r["members_bytes"], "members_sha256": r["members_sha256"],
                           "clips": r["clips"], **g} for r, g in zip(records, groups, strict=True)], columns=PACK_COLUMNS)
    write_parquet(table, out_dir / PACKS)
    root.save_manifest("pack", table.assign(stage="pack"))
    summary = {"packs": len(table), "bytes": int(table["bytes"].sum()), "clips": int(table["rows"].sum()),
               "train_clips": int(table["train"].sum()), "pack_mb": cfg.pack_mb, **counts.as_summary()}
    write_json(summary, out_dir / "summary.json")
    log.info("%d training packs (%d reused, %d written) of %d clips", len(table), counts.reused, counts.computed,
             summary["clips"])
    return summary
