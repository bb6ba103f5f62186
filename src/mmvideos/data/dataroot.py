"""The data root: where every stage keeps its bulk output, content-addressed and write-once.

A data root is a local folder (``mmvideos run``, ``dvc repro``) or a ``gs://bucket/prefix`` (a
cluster). Stages are maps over *units*: one unit is one stage's output for one input shard (a
video for ``probe`` and ``clip``, a clip shard for the annotators and ``features``). Layout::

    <root>/<stage>/<key[:2]>/<key>/<files>       a unit's files (tar shards, score tables)
    <root>/<stage>/<key[:2]>/<key>/COMMIT.json   written last: the unit exists once this does
    <root>/manifests/<stage>/<sha256>.parquet    every manifest a stage produced (gc's roots)
    <root>/listings/<fingerprint>.parquet        source listings, by their fingerprint
    <root>/pretrain/<key>/checkpoint.pt          resumable training state of one run's settings

A unit's key (:mod:`mmvideos.data.keys`) covers its stage, the code that computes it, the content
hash of its input and the settings that change its result: an edited line of that code gives new
keys, so the units it can change are computed again and no other. A unit is never rewritten: a
task killed half-way leaves files without a ``COMMIT.json``, which no reader looks at and the next
attempt overwrites; a committed unit is found by its key and reused, by any run, compiled version
or DVC stage on the same root.

Stage outputs handed between tasks (KFP artifacts, DVC outs) are *manifests*: small tables
with one row per unit file (:data:`MANIFEST_COLUMNS`), never the bulk bytes. They name a unit's
files relative to the data root (``<stage>/<key[:2]>/<key>/<file>``, :func:`unit_path`), so a
manifest pulled into another clone, machine or bucket is read against *that* reader's data root
(:meth:`DataRoot.resolve`), never against the writer's; a unit the reader's root lacks is made
again by the stage that owns it or is an error naming it and that stage (:meth:`DataRoot.require`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mmvideos.data import integrity, runrecord, storage, tables
from mmvideos.data.atomic import scratch_dir, write_parquet
from mmvideos.data.files import sha256_and_md5
from mmvideos.data.keys import STAGE_VERSIONS, UNIT_CODE, unit_code, unit_key, unit_path

log = logging.getLogger(__name__)

__all__ = ["STAGE_VERSIONS", "UNIT_CODE", "DataRoot", "unit_code", "unit_key", "unit_path"]  # keys: data.keys

#: The stages whose units live under the data root (gc walks these, plus ``pretrain``).
UNIT_STAGES = tuple(STAGE_VERSIONS)

COMMIT = integrity.COMMIT
MANIFEST = "manifest.parquet"
#: One row per unit file: the stage, the unit key, the video it came from, the file's name, its
#: path relative to the data root (:func:`unit_path`; an absolute URI only for files outside any
#: root, such as a synthetic set), clips and seconds of audio it holds, size and SHA-256. Nothing
#: about the run that wrote it (whether it was reused, how long it took): a manifest depends only
#: on its inputs, settings and code.
MANIFEST_COLUMNS = ["stage", "key", "video_id", "file", "uri", "clips", "seconds", "bytes", "sha256"]


def is_root_relative(uri: str) -> bool:
    """Whether ``uri`` names a file relative to a data root (not ``gs://...``, not an absolute path)."""
    return not storage.is_gcs(uri) and not uri.startswith("/")


def slot_of(name: str, slots: int) -> int:
    """The task slot (``0..slots-1``) that handles the item ``name`` (a video id, a URI).

    A hash, so an item keeps its slot when others are added and slots get even shares.
    """
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % slots


@dataclasses.dataclass
class Counts:
    """What a map task did: units (shards) reused and computed, clips computed."""

    reused: int = 0
    computed: int = 0
    clips_computed: int = 0

    def as_summary(self) -> dict[str, int]:
        return {"shards_reused": self.reused, "shards_computed": self.computed, "clips_computed": self.clips_computed}


class DataRoot:
    """A data root (module docstring): find, commit and list units by key."""

    def __init__(self, root: str | Path) -> None:
        root = str(root)
        if not root:
            raise ValueError("no data root: set data.root in params.yaml or pass --data-root "
                             "(a local folder, or gs://bucket/prefix on a cluster)")
        if root.startswith("gs:") and not storage.is_gcs(root):
            raise ValueError(f"data root {root!r} is not a gs:// URI (gs://bucket/prefix)")
        if storage.is_gcs(root):
            storage.split_gcs(root)  # refuses a URI without a bucket
            self.uri = root.rstrip("/")
        else:
            self.uri = str(Path(root).resolve())

    def unit(self, stage: str, key: str) -> str:
        """The folder (or prefix) of a unit."""
        return storage.join(self.uri, unit_path(stage, key))

    def resolve(self, uri: str) -> str:
        """The URI under this root of a file named relative to a data root (a manifest's ``uri``,
        an index's ``shard``); an absolute URI (a file outside any root) as it is."""
        return storage.join(self.uri, uri) if is_root_relative(uri) else uri

    def resolved(self, rows: pd.DataFrame, column: str = "uri") -> pd.DataFrame:
        """``rows`` with ``column`` resolved against this root (:meth:`resolve`)."""
        return rows.assign(**{column: [self.resolve(u) for u in rows[column]]})

    def missing(self, rows: pd.DataFrame) -> list[tuple[str, str]]:
        """The ``(stage, key)`` of the units named by manifest ``rows`` that this root does not hold
        (no ``COMMIT.json``: never written here, collected, or half-written)."""
        units = rows[["stage", "key"]].drop_duplicates().itertuples(index=False)
        return [(stage, key) for stage, key in units
                if not storage.exists(storage.join(self.unit(stage, key), COMMIT))]

    def require(self, rows: pd.DataFrame, folder: str | Path, remake: Callable[[], object] | None = None) -> None:
        """Make sure this root holds every unit that manifest ``rows`` (of the stage folder ``folder``)
        name: when some are missing, ``remake()`` (the owning stage, run again on this root) is
        called once; a unit still missing is an error naming it, its stage and what to run."""
        missing = self.missing(rows)
        if missing and remake is not None:
            log.warning("%d unit(s) named by %s are not in the data root %s: making them again (%s)",
                        len(missing), folder, self.uri, missing[0][0])
            remake()
            missing = self.missing(rows)
        if missing:
            stage, key = missing[0]
            owner = "ingest" if stage == "probe" else stage  # the stage (of dvc.yaml, of the pipeline) that makes it
            raise FileNotFoundError(
                f"the {stage} unit {unit_path(stage, key)} named by {storage.join(folder, MANIFEST)} (and "
                f"{len(missing) - 1} more) is not in the data root {self.uri}: it is made by the `{owner}` stage; "
                f"run that stage again on this data root (`dvc repro -f -s {owner}`, or `mmvideos run`)")

    def find(self, stage: str, key: str, contents: bool = True) -> dict | None:
        """The commit record of a finished unit, or ``None`` when it does not exist (yet).

        The unit is verified first (:func:`mmvideos.data.integrity.verified`: its commit
        self-checked, its files hashed against it, once per process); a corrupt one is moved to
        quarantine and reported as missing, so its stage recomputes it. Its URIs are those under
        this root, wherever the unit was written: a root copied to another folder or bucket
        keeps working. ``contents=False``: the files' sizes only, for a stage whose reader checks
        every byte it uses (:func:`mmvideos.data.integrity.verified`).
        """
        folder = self.unit(stage, key)
        try:
            record = integrity.verified(folder, storage.read_bytes(storage.join(folder, COMMIT)), contents)
        except FileNotFoundError:
            return None
        except integrity.CorruptUnit as exc:
            moved = integrity.quarantine(self.uri, stage, key, folder)
            log.warning("%s unit %s failed verification and was moved to %s, to be recomputed: %s",
                        stage, key, moved, exc)
            return None
        files = {name: {**meta, "uri": storage.join(folder, name)} for name, meta in record.get("files", {}).items()}
        return {**record, "unit": folder, "files": files}

    def commit(self, stage: str, key: str, files: dict[str, Path], record: dict) -> dict:
        """Place a unit's local ``files`` ({name: path}) under its key, then its ``COMMIT.json``.

        The commit record is ``record`` plus ``files``: {name: {uri, bytes, sha256}}, sealed with
        the SHA-256 of its own body (:func:`mmvideos.data.integrity.sealed`). Until the commit
        file is written the unit does not exist for readers.
        """
        folder = self.unit(stage, key)
        placed = {}
        for name, path in sorted(files.items()):
            uri = storage.join(folder, name)
            storage.put_file(path, uri)
            sha256, md5 = sha256_and_md5(path)
            placed[name] = {"uri": uri, "bytes": Path(path).stat().st_size, "sha256": sha256, "md5": md5}
        committed = {**record, "stage": stage, "key": key, "unit": folder, "files": placed}
        storage.put_bytes(integrity.sealed(committed), storage.join(folder, COMMIT))
        return committed

    def save_manifest(self, stage: str, manifest: pd.DataFrame) -> str:
        """Record a stage's manifest under ``manifests/<stage>/`` (gc keeps what they name).

        Named by the SHA-256 of its keys, and rewritten when it already exists, so its time is
        that of the last run that used it.
        """
        if manifest.empty:
            return ""
        keys = "\n".join(sorted(set(manifest["key"]))).encode()
        buf = io.BytesIO()
        manifest[["stage", "key"]].drop_duplicates().to_parquet(buf, index=False)
        uri = storage.join(self.uri, "manifests", stage, f"{hashlib.sha256(keys).hexdigest()}.parquet")
        storage.put_bytes(buf.getvalue(), uri)
        return uri

    def write_manifest(self, stage: str, records: Iterable[dict], out_dir: str | Path, slots: int) -> pd.DataFrame:
        """A map stage's manifest of its units' ``records``, written to ``out_dir/MANIFEST``; a run
        whole in one task (``slots == 1``: the single-stage CLI, ``dvc repro``, a library call) also
        records it under ``manifests/<stage>/``, so gc keeps its units; a task of several slots
        records nothing (the gather records their union, one run)."""
        manifest = manifest_rows(records)
        write_parquet(manifest, Path(out_dir) / MANIFEST)
        if slots == 1:
            self.save_manifest(stage, manifest)
        return manifest

    def map_units(self, stage: str, items: Iterable[tuple[str, Any]],
                  compute: Callable[[Any, Path], tuple[dict, dict[str, Path]]],
                  on_done: Callable[[Any, dict | None, bool], None] | None = None,
                  skip: tuple[type[BaseException], ...] = (), contents: bool = True
                  ) -> tuple[list[dict], Counts, list[tuple[Any, Exception]]]:
        """Run ``compute`` for every ``(key, item)`` whose unit is not committed yet.

        ``compute(item, scratch)`` writes the unit's files into the local ``scratch`` folder and
        returns ``(record, {name: path})``; the record should carry ``clips``. Finished units
        are reused as they are. An item whose ``compute`` raises one of ``skip`` (e.g. a file
        that cannot be read now) is left uncommitted, for the next run to try again.

        Returns the commit records in item order (each with ``reused``, which is not stored),
        the counts and the skipped ``(item, exception)`` pairs; ``on_done(item, record, reused)``
        is called after each item (progress bars; ``record`` is ``None`` for a skipped one).
        ``contents``: whether a reused unit's files are hashed (:meth:`find`).
        """
        records, counts, skipped = [], Counts(), []
        for key, item in items:
            record = self.find(stage, key, contents)
            reused = record is not None
            if record is None:
                try:
                    with scratch_dir(stage) as scratch:
                        body, files = compute(item, Path(scratch))
                        record = self.commit(stage, key, files, body)
                except skip as exc:
                    skipped.append((item, exc))
                else:
                    counts.computed += 1
                    counts.clips_computed += int(record.get("clips", 0))
            else:
                counts.reused += 1
            if record is not None:
                records.append({**record, "reused": reused})
            if on_done is not None:
                on_done(item, record, reused)
        return records, counts, skipped


def manifest_rows(records: Iterable[dict]) -> pd.DataFrame:
    """Manifest rows (:data:`MANIFEST_COLUMNS`) of commit records, one per unit file (a unit
    without files, such as a probe or a rejected video, gets one row for its commit file)."""
    rows = []
    for record in records:
        files = record.get("files") or {COMMIT: {"bytes": 0, "sha256": ""}}
        for name, meta in sorted(files.items()):
            rows.append({"stage": record["stage"], "key": record["key"], "video_id": record.get("video_id", ""),
                         "file": name, "uri": unit_path(record["stage"], record["key"], name),
                         "clips": int(record.get("clips", 0)), "seconds": float(record.get("seconds", 0.0)),
                         "bytes": int(meta["bytes"]), "sha256": meta["sha256"]})
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def concat(tables: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """The rows of ``tables`` in one table (empty with ``columns`` when they have none)."""
    non_empty = [t for t in tables if not t.empty]
    return pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(columns=columns)


def slot_units(folder: str | Path, name: str, root: DataRoot, slot: int = 0, slots: int = 1) -> pd.DataFrame:
    """The manifest rows of a stage folder's ``name`` files (e.g. ``audio.tar``) that fall to
    task ``slot`` (slots split the work by video, as every map stage does), their ``uri`` resolved
    against ``root``."""
    manifest = read_manifest(folder)
    rows = manifest[manifest["file"] == name]
    return root.resolved(rows[np.array([slot_of(v, slots) == slot for v in rows["video_id"]], dtype=bool)])


def read_manifest(folder: str | Path) -> pd.DataFrame:
    """The manifest table of a stage output folder (empty with the columns when it has none)."""
    uri = storage.join(folder, MANIFEST)
    if not storage.is_gcs(str(folder)) and not Path(uri).is_file():
        return pd.DataFrame(columns=MANIFEST_COLUMNS)
    return storage.read_parquet(uri)


def file_uris(folder: str | Path, name: str, root: DataRoot) -> dict[str, str]:
    """``{unit key: URI under root}`` of the unit files called ``name`` that a stage folder's manifest lists."""
    manifest = read_manifest(folder)
    rows = manifest[manifest["file"] == name]
    return dict(zip(rows["key"], (root.resolve(u) for u in rows["uri"])))


@dataclasses.dataclass(frozen=True)
class Garbage:
    """What :func:`collect_garbage` found: unreferenced unit files and their bytes."""

    files: list[str]
    bytes: int
    units: int
    kept_units: int


def collect_garbage(root: str | Path, keep_runs: int = 3, min_age_s: float = 24 * 3600,
                    delete: bool = False) -> Garbage:
    """The unit files no kept manifest references (and, with ``delete``, remove them).

    A stage's kept manifests are the ``keep_runs`` it wrote or re-used most recently. Units
    younger than ``min_age_s`` are never collected: a run in flight may not have written its
    manifest yet. Listings and manifests older than every kept one go too, and so do temporary
    files a killed write left inside kept units.
    """
    if keep_runs < 1:
        raise ValueError(f"gc --keep-runs must be at least 1, got {keep_runs}: the latest run's manifests are "
                         "always kept")
    data, now = DataRoot(root), time.time()
    referenced: set[tuple[str, str]] = set()
    stale_meta: list[str] = []
    for prefix, is_manifest in ([(storage.join(data.uri, "manifests", s), True) for s in (*UNIT_STAGES, "pretrain")]
                                + [(storage.join(data.uri, "listings"), False)]):
        entries = sorted(storage.list_files(prefix), key=lambda e: e[1], reverse=True)
        if is_manifest:
            for uri, _, _ in entries[:keep_runs]:
                table = storage.read_parquet(uri)
                referenced |= set(zip(table["stage"], table["key"]))
        stale_meta += [uri for uri, mtime, _ in entries[keep_runs:] if now - mtime >= min_age_s]
    units: dict[tuple[str, str], list[tuple[str, float, int]]] = {}
    for stage in (*UNIT_STAGES, "pretrain"):
        for entry in storage.list_files(storage.join(data.uri, stage)):
            units.setdefault((stage, entry[0].rsplit("/", 2)[-2]), []).append(entry)
    # a unit goes whole or not at all: by its references and its newest file
    dead = {unit: files for unit, files in units.items()
            if unit not in referenced and now - max(mtime for _, mtime, _ in files) >= min_age_s}
    # leftovers of writes killed half-way (atomic_path's ".<name>.<random>.tmp") inside kept units
    stray = [(uri, size) for unit, files in units.items() if unit not in dead for uri, mtime, size in files
             if uri.rsplit("/", 1)[-1].startswith(".") and uri.endswith(".tmp") and now - mtime >= min_age_s]
    garbage = [uri for files in dead.values() for uri, _, _ in files] + [uri for uri, _ in stray] + stale_meta
    if delete:
        # COMMIT.json first: a unit loses its visibility before its files go
        for uri in sorted(garbage, key=lambda u: not u.endswith(COMMIT)):
            storage.delete(uri)
    return Garbage(files=garbage, bytes=sum(size for files in dead.values() for _, _, size in files)
                   + sum(size for _, size in stray), units=len(dead), kept_units=len(units) - len(dead))


#: Tables of a stage's output that the gather concatenates over its task slots; every other
#: file (classes.csv, vocabulary.parquet, config.json) is the same in every part and copied once.
CONCATENATED = ("manifest.parquet", "probes.parquet", "clips.parquet", "rejects.parquet", "visual.parquet",
                "audio.parquet", "index.parquet", "videos.parquet")
#: Summary counts that add up over slots; other summary values are taken from the first part.
ADDITIVE = ("files", "gone_since_listed", "videos_in", "videos_clipped", "videos_rejected", "clips", "audio_hours",
            "frames", "seconds", "audio_seconds", "shards_reused", "shards_computed", "clips_computed",
            "clips_unlabelled", "clips_too_short", "shards", "labels")


def gather(parts: list[str | Path], out_dir: str | Path, stage: str, root: DataRoot | None = None) -> dict:
    """Concatenate the slot outputs of a map stage into one output folder; returns its summary.

    Only manifests and tables are read and written, never a shard. Rows are sorted by their id
    (unit key, clip id or URI), so the output does not depend on the number of slots. With
    ``root`` the merged manifest is also recorded under ``manifests/<stage>/`` (what gc keeps).
    """
    out_dir = Path(out_dir)
    parts = [Path(p) for p in parts]
    if not parts:
        raise ValueError(f"gather {stage}: no parts")
    for name in sorted({p.name for part in parts for p in part.iterdir() if p.is_file()}):
        if name in (runrecord.SUMMARY, runrecord.RUN):
            continue
        if name in CONCATENATED:
            _gather_table([part / name for part in parts if (part / name).is_file()], out_dir / name)
        else:
            source = next(part / name for part in parts if (part / name).is_file())
            storage.put_file(source, out_dir / name)
    summaries = [runrecord.read_summary(part) for part in parts if (part / runrecord.SUMMARY).is_file()]
    summary = dict(summaries[0]) if summaries else {}
    for key in ADDITIVE:
        if any(key in s for s in summaries):
            total = sum(s.get(key, 0) for s in summaries)
            summary[key] = round(total, 4) if isinstance(total, float) else total
    summary = {k: v for k, v in summary.items() if not k.endswith("_per_s")}  # per-slot rates do not add up
    summary["task_slots"] = len(parts)
    runrecord.write_summary(summary, out_dir)
    if root is not None and (out_dir / MANIFEST).is_file():
        root.save_manifest(stage, pd.read_parquet(out_dir / MANIFEST))
    return summary


def _gather_table(paths: list[Path], target: Path) -> None:
    """The rows of ``paths`` sorted by their id into ``target``, streamed (:mod:`mmvideos.data.tables`):
    the stable order of a sort of the parts concatenated in slot order, without holding every row."""
    from mmvideos.data.atomic import write_parquet

    names = tables.table_schema(paths).names
    if not sum(tables.count_rows(p) for p in paths):  # as pandas writes a table of no rows: untyped columns
        write_parquet(pd.DataFrame(columns=names), target)
        return
    by = [c for c in (["key", "file"] if target.name == MANIFEST else ["clip_id"] if "clip_id" in names else ["uri"])
          if c in names]
    with scratch_dir("gather") as scratch:
        tables.write_tables(tables.sorted_tables(paths, by, scratch), target, tables.table_schema(paths))


def resolve(root: DataRoot | None, uri: str) -> str:
    """``root.resolve(uri)``; without a root, an absolute URI as it is and a root-relative one an error."""
    if root is not None:
        return root.resolve(uri)
    if is_root_relative(uri):
        raise ValueError(f"{uri} is named relative to a data root, and none was given: pass the data root "
                         "(--data-root, params.yaml data.root)")
    return uri

