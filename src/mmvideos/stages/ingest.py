"""Stage 1, ingest: discover videos, probe them, keep those with sound and picture.

Ingest is a map and a reduce over the data root (:mod:`mmvideos.data.dataroot`):

1. :func:`list_source` lists the source (no video is read) and stores the listing by its
   fingerprint; the pipeline runs it on every run (never cached).
2. :func:`probe_listing`, one task per slot, probes the files that fall to its slot. A probe is a
   unit keyed by the file's listing entry, so a file listed before is not read again.
3. :func:`gather_probes` applies the settings and writes the tables (one writer: this module):

* ``videos.parquet``: video_id, uri, sha256, size_bytes, duration_s, video_codec, width, height,
  fps, audio_codec, sample_rate, channels, fold, split
* ``rejects.parquet``: uri, video_id (when known), reason, stage

Every listed URI ends up in exactly one of the two. The video id is a UUID derived from the
file's content (``uuid5`` of its SHA-256), so re-ingesting the same bytes gives the same id
wherever they live, and a second copy is rejected as a duplicate of the first (in URI order).
``fold = hash(UUID) mod num_folds`` and the split follows the fold: of every
``val_every_n_folds`` consecutive fold residues, the one equal to ``val_part`` is validation
(paper: 14 M train, 1 M val, 4,096 folds). A corpus of a few videos may get a validation set of
one video or none that way: ``val_fraction`` puts at least that share of the videos in validation
(:func:`widen_validation`), with a warning that this departs from the paper's split.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path

import pandas as pd

from mmvideos.data import dataroot, media, storage
from mmvideos.data.atomic import scratch_dir, write_parquet
from mmvideos.data.dataroot import MANIFEST, DataRoot, manifest_rows, slot_of, unit_key
from mmvideos.data.runrecord import read_summary, write_summary
from mmvideos.data.files import sha256_file
from mmvideos.data.storage.gcs import ShortRead
from mmvideos.data.sources import REFUSED, entries_fingerprint, source_entries
from mmvideos.demo.corpus import resolve_source
from mmvideos.progress import progress_bar
from mmvideos.stages import overlap

log = logging.getLogger(__name__)

#: Namespace of content-derived video ids (uuid5 over the SHA-256 hex digest).
VIDEO_NAMESPACE = uuid.UUID("6f3c1d2e-5b7a-4c1e-9a8d-2f4b6c8e0a1d")

REJECT_COLUMNS = ["uri", "video_id", "reason", "stage"]
VIDEO_COLUMNS = ["video_id", "uri", "generation", "sha256", "size_bytes", "duration_s", "video_codec", "width",
                 "height", "fps", "audio_codec", "sample_rate", "channels", "fold", "split"]


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """``params.yaml: ingest``."""

    min_duration_s: float = 3.0
    max_duration_s: float = 86400.0
    num_folds: int = 4096
    val_every_n_folds: int = 15
    val_part: int = 14
    val_fraction: float = 0.0    # > 0: at least this share of the videos in validation (small corpora)
    exclude: overlap.ExcludeConfig = dataclasses.field(default_factory=overlap.ExcludeConfig)
    fingerprint: overlap.FingerprintConfig = dataclasses.field(default_factory=overlap.FingerprintConfig)

    def __post_init__(self) -> None:
        if not 0 < self.min_duration_s <= self.max_duration_s:
            raise ValueError(f"ingest needs 0 < min_duration_s <= max_duration_s, got {self.min_duration_s}, "
                             f"{self.max_duration_s}")
        if self.num_folds <= 0 or self.val_every_n_folds <= 0:
            raise ValueError("num_folds and val_every_n_folds must be positive")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {self.val_fraction}")
        if not 0 <= self.val_part < self.val_every_n_folds:
            raise ValueError(f"val_part must lie in [0, {self.val_every_n_folds}), got {self.val_part}")


def video_id_for(sha256: str) -> str:
    """The content-derived UUID of a file with this SHA-256."""
    return str(uuid.uuid5(VIDEO_NAMESPACE, sha256))


def fold_of(video_id: str, num_folds: int = 4096) -> int:
    """``hash(UUID) mod num_folds`` with a stable hash (SHA-256 of the UUID's bytes)."""
    digest = hashlib.sha256(uuid.UUID(video_id).bytes).digest()
    return int.from_bytes(digest[:8], "big") % num_folds


def split_of(fold: int, val_every_n_folds: int = 15, val_part: int = 14) -> str:
    """``val`` when ``fold % val_every_n_folds == val_part`` (one part in 15), else ``train``."""
    return "val" if fold % val_every_n_folds == val_part else "train"


def widen_validation(videos: pd.DataFrame, fraction: float) -> pd.DataFrame:
    """With ``fraction`` > 0, at least ``ceil(fraction * videos)`` videos (and one left for training) in
    validation: the fold rule's validation videos, then the others in order of their content hash, so the
    choice is stable. Warns that this departs from the paper's split (one part in 15)."""
    import math

    if fraction <= 0 or len(videos) < 2:
        return videos
    wanted = min(max(math.ceil(fraction * len(videos)), 1), len(videos) - 1)
    already = int((videos["split"] == "val").sum())
    if already >= wanted:
        return videos
    order = videos.assign(_rank=[hashlib.sha256(v.encode()).hexdigest() for v in videos["video_id"]])
    order = order.sort_values(["split", "_rank"], ascending=[False, True])  # "val" first, then by hash
    chosen = order.index[:wanted]
    log.warning("ingest.val_fraction %g: %d of %d videos in validation (the fold rule chose %d), departing from "
                "the paper's 14/1 split; set it to 0 for the paper's", fraction, wanted, len(videos), already)
    return videos.assign(split=["val" if i in chosen else s for i, s in zip(videos.index, videos["split"])])


def list_source(source: str | Path, root: DataRoot) -> str:
    """List ``source`` (no video is read) into the data root; returns the listing's fingerprint.

    An empty ``source`` is the demo corpus, fetched on first use.
    The listing, ``(uri, size, version)`` per file (:func:`source_entries`), is stored as
    ``listings/<fingerprint>.parquet``: the probe tasks read it from there by fingerprint, and
    the fingerprint changes exactly when a file was added, removed or rewritten.
    """
    entries = sorted(source_entries(resolve_source(source)))
    fingerprint = entries_fingerprint(entries)
    uri = storage.join(root.uri, "listings", f"{fingerprint}.parquet")
    buf = io.BytesIO()
    pd.DataFrame(entries, columns=["uri", "size", "version"]).to_parquet(buf, index=False)
    storage.put_bytes(buf.getvalue(), uri)  # rewritten when it exists: its time says when it was last listed
    return fingerprint


def read_listing(root: DataRoot, fingerprint: str) -> pd.DataFrame:
    """A listing stored by :func:`list_source`."""
    return storage.read_parquet(storage.join(root.uri, "listings", f"{fingerprint}.parquet"))


def probe_listing(root: DataRoot, fingerprint: str, out_dir: str | Path, slot: int = 0, slots: int = 1,
                  progress: bool = True, audio_fingerprint_s: float = overlap.FingerprintConfig.seconds) -> dict:
    """Probe the files of a listing that fall to task ``slot`` of ``slots`` (the ingest map).

    Each file's probe is a unit keyed by its listing entry (URI, size, mtime or GCS generation),
    so a file seen before is not read again; it holds the Chromaprint fingerprint of the first
    ``audio_fingerprint_s`` seconds of audio (:mod:`mmvideos.stages.overlap`). Writes ``probes.parquet``
    (:data:`PROBE_COLUMNS`) and the manifest into ``out_dir``; :func:`gather_probes` turns the
    parts into the tables. A file that cannot be read now (a storage error that outlived its
    retries) is not committed: the others are finished, then the task fails
    (``StorageUnavailable``), so no cache keeps the run and the next one reads it. A file gone
    since the listing is a reject of this run only.
    """
    started = time.monotonic()
    listing = read_listing(root, fingerprint)
    mine = listing[[slot_of(uri, slots) == slot for uri in listing["uri"]]]
    bar = progress_bar(total=len(mine), desc="probe", unit="file", disable=not progress)

    def compute(entry, scratch: Path) -> tuple[dict, dict]:
        if str(entry.version).startswith(REFUSED):
            return {"uri": entry.uri, "reason": str(entry.version)[len(REFUSED):]}, {}
        return _probe(entry.uri, _generation(entry.uri, str(entry.version)), audio_fingerprint_s, int(entry.size)), {}

    items = [(unit_key("probe", uri=e.uri, size=int(e.size), entry_version=str(e.version),
                       fingerprint_s=audio_fingerprint_s), e)
             for e in mine.itertuples(index=False)]
    records, counts, skipped = root.map_units("probe", items, compute, lambda *_: bar.update(),
                                              skip=storage.transient_errors())
    bar.close()
    # gone since listed: a reject of this run only (the next listing no longer has it);
    # could not be read now: the stage fails below, so no cache keeps a run that missed it
    unreadable = [(entry, exc) for entry, exc in skipped if not isinstance(exc, FileNotFoundError)]
    gone = [{"uri": entry.uri, "reason": "file not found"} for entry, exc in skipped
                 if isinstance(exc, FileNotFoundError)]
    for entry, exc in skipped:
        log.warning("ingest: %s cannot be read now: %s", entry.uri, exc)
    out_dir = Path(out_dir)
    rows = [{c: r.get(c) for c in PROBE_COLUMNS} for r in records]
    rows += [{**{c: None for c in PROBE_COLUMNS}, **t} for t in gone]
    write_parquet(pd.DataFrame(rows, columns=PROBE_COLUMNS), out_dir / "probes.parquet")
    manifest = manifest_rows(records)
    write_parquet(manifest, out_dir / MANIFEST)
    summary = {"files": len(mine), "gone_since_listed": len(gone), **counts.as_summary(),
               "seconds": round(time.monotonic() - started, 2)}
    write_summary(summary, out_dir)
    if unreadable:
        raise_unreadable("ingest", [(entry.uri, exc) for entry, exc in unreadable], len(mine))
    return summary


def raise_unreadable(stage: str, failures: list[tuple[str, BaseException]], total: int) -> None:
    """Fail a stage that could not read some of its inputs now (storage or I/O errors that
    outlived their retries): what it finished is kept in the data root, and a re-run reads the
    rest. A full local disk (``ENOSPC``) says so instead: it is this machine, not the inputs."""
    uri, exc = failures[0]
    full = [u for u, e in failures if getattr(e, "errno", None) == errno.ENOSPC]
    if full:
        raise OSError(errno.ENOSPC, f"{stage}: no space left on device while working on {full[0]} ({len(full)} of "
                                    f"{total} files): free space in {tempfile.gettempdir()} (scratch, TMPDIR) and "
                                    "the data root, then run again; what was finished is kept")
    raise storage.StorageUnavailable(
        f"{stage}: {len(failures)} of {total} files could not be read now (first: {uri}: {exc}); "
        "they were not examined (an I/O or storage error, never a reject), the others are kept: run again")


def _generation(uri: str, version: str) -> int | None:
    """The GCS generation a listing recorded (``<generation>:<md5>``), else ``None``."""
    head = version.partition(":")[0]
    return int(head) if storage.is_gcs(uri) and head.isdigit() else None


def _probe(uri: str, generation: int | None = None, fingerprint_s: float = 0.0,
           listed_size: int | None = None) -> dict:
    """One file's probe record: its content hash, streams and audio fingerprint (of the first
    ``fingerprint_s`` seconds), or the reason it is no video.

    A GCS object is read at the ``generation`` listed, which the record keeps for the clip stage.
    Storage errors, I/O errors while decoding (:class:`media.MediaUnreadable`) and a read shorter
    or longer than the ``listed_size`` (a truncated download, a file changed since it was listed)
    propagate: the file is not examined (:func:`probe_listing`). Only content FFmpeg refuses is
    a reason (a reject).
    """
    record: dict = {"uri": uri, "generation": generation}
    with storage.local_copy(uri, generation) as path:
        size = path.stat().st_size
        if listed_size is not None and size != listed_size:
            raise ShortRead(errno.EIO, f"{uri}: read {size} bytes but the listing says {listed_size} (a truncated "
                                       "read, or the file changed since it was listed); run again")
        if size == 0:
            return {**record, "reason": "empty file"}
        record |= {"sha256": sha256_file(path), "size_bytes": size}
        try:
            info = media.probe(path)
            if info.has_audio and fingerprint_s > 0:
                record |= overlap.audio_prints(path, fingerprint_s)
        except media.MediaError as exc:
            return {**record, "reason": str(exc)}
    return {**record, **dataclasses.asdict(info), "reason": ""}


#: ``probes.parquet``: a probe record per file (stream facts, or why it is no video).
PROBE_COLUMNS = ["uri", "generation", "sha256", "size_bytes", "has_video", "has_audio", "duration_s", "video_codec",
                 "width", "height", "fps", "audio_codec", "sample_rate", "channels", "fingerprint", "landmarks",
                 "reason"]


def gather_probes(parts: list[str | Path], out_dir: str | Path, cfg: IngestConfig = IngestConfig(),
                  root: DataRoot | None = None) -> dict:
    """The ingest reduce: probe parts -> ``videos.parquet`` and ``rejects.parquet``.

    Applies the settings (streams, minimum duration), gives each kept video its content id,
    fold and split, and rejects byte-identical copies as duplicates of the first URI, then
    benchmark overlaps and near duplicates (:func:`mmvideos.stages.overlap.screen`).
    """
    out_dir = Path(out_dir)
    probes = dataroot.concat([storage.read_parquet(storage.join(p, "probes.parquet")) for p in parts], PROBE_COLUMNS)
    probes = probes.sort_values("uri", ignore_index=True)
    kept, rejects, seen = [], [], {}
    for row in probes.itertuples(index=False):
        reason = _verdict(row, cfg)
        if not reason and row.sha256 in seen:
            reason = f"duplicate of {seen[row.sha256]}"
        if reason:
            rejects.append({"uri": row.uri, "video_id": None, "reason": reason, "stage": "ingest"})
            continue
        seen[row.sha256] = row.uri
        video_id = video_id_for(row.sha256)
        fold = fold_of(video_id, cfg.num_folds)
        kept.append({**{c: getattr(row, c) for c in VIDEO_COLUMNS if hasattr(row, c)}, "video_id": video_id,
                     "fold": fold, "split": split_of(fold, cfg.val_every_n_folds, cfg.val_part)})
    candidates = probes[probes["uri"].isin([k["uri"] for k in kept])]
    screened = overlap.screen(candidates, cfg.exclude, cfg.fingerprint, root)
    rejects += [{"uri": uri, "video_id": None, "reason": r, "stage": "ingest"} for uri, r in screened.reasons.items()]
    kept = [k for k in kept if k["uri"] not in screened.reasons]
    videos = widen_validation(pd.DataFrame(kept, columns=VIDEO_COLUMNS), cfg.val_fraction)
    videos = videos.sort_values("video_id", ignore_index=True)
    rejected = pd.DataFrame(rejects, columns=REJECT_COLUMNS).sort_values("uri", ignore_index=True)
    write_parquet(videos, out_dir / "videos.parquet")
    write_parquet(rejected, out_dir / "rejects.parquet")
    manifest = dataroot.concat([*(dataroot.read_manifest(p) for p in parts), screened.manifest],
                               dataroot.MANIFEST_COLUMNS)
    write_parquet(manifest, out_dir / MANIFEST)
    if root is not None:
        root.save_manifest("probe", manifest)
    counts = [read_summary(p) for p in parts]  # a part's reuse counts are in its run record
    summary = {
        "inputs": len(probes),
        "videos_kept": len(videos),
        "videos_rejected": len(rejected),
        "hours_of_video": round(float(videos["duration_s"].sum()) / 3600, 4),
        "train_videos": int((videos["split"] == "train").sum()),
        "val_videos": int((videos["split"] == "val").sum()),
        **screened.summary(rejected),
        **{k: sum(c.get(k, 0) for c in counts) for k in ("shards_reused", "shards_computed")},
        "seconds": round(sum(c.get("seconds", 0.0) for c in counts), 1),
    }
    write_summary(summary, out_dir)
    return summary


def _verdict(row, cfg: IngestConfig) -> str:
    """Why a probed file is not kept ("" when it is)."""
    if isinstance(row.reason, str) and row.reason:
        return row.reason
    if not row.has_video and not row.has_audio:
        return "no audio and no video stream"
    if not row.has_audio:
        return "no audio stream (picture only)"
    if not row.has_video:
        return "no video stream (sound only)"
    if row.duration_s < cfg.min_duration_s:
        return f"too short: {row.duration_s:.2f} s, a clip needs at least {cfg.min_duration_s:g} s"
    if row.duration_s > cfg.max_duration_s:
        return (f"too long: the container declares {row.duration_s:.0f} s, more than ingest.max_duration_s "
                f"({cfg.max_duration_s:g} s)")
    return ""


def ingest(source: str | Path, out_dir: str | Path, root: DataRoot, cfg: IngestConfig = IngestConfig(),
           progress: bool = True) -> dict:
    """List, probe and gather in one process (the CLI and DVC); returns the summary.

    The pipeline runs the same three steps as separate tasks, the probes fanned out.
    """
    out_dir = Path(out_dir)
    fingerprint = list_source(source, root)
    with scratch_dir("probe") as part:
        probe_listing(root, fingerprint, part, progress=progress, audio_fingerprint_s=cfg.fingerprint.seconds)
        summary = gather_probes([part], out_dir, cfg, root)
    summary["source_fingerprint"] = fingerprint
    write_summary(summary, out_dir)
    return summary


class NoUsableVideoError(RuntimeError):
    """No input of the source passed ingest: nothing to clip, annotate or train on."""


def reasons_inline(rejects: pd.DataFrame, limit: int = 5) -> str:
    """Rejected inputs as ``"name: reason; ..."``, the first ``limit`` of them, then how many more."""
    shown = [f"{str(uri).rstrip('/').rsplit('/', 1)[-1]}: {reason}"
             for uri, reason in zip(rejects["uri"].head(limit), rejects["reason"].head(limit))]
    more = len(rejects) - len(shown)
    return "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def require_usable(ingest_dir: str | Path) -> None:
    """Raise :class:`NoUsableVideoError` with the accounting when an ingest folder kept no video."""
    summary = json.loads(storage.read_bytes(storage.join(ingest_dir, "summary.json")))
    if summary["videos_kept"]:
        return
    rejects = storage.read_parquet(storage.join(ingest_dir, "rejects.parquet"))
    raise NoUsableVideoError(
        f"0 of {summary['inputs']} videos kept" + (f": {reasons_inline(rejects)}" if len(rejects) else
                                                   " (the source lists no file)") +
        ". Each video needs a sound track, a picture and at least ingest.min_duration_s seconds: point --source "
        f"(or data.source) at such videos (every reason: {storage.join(ingest_dir, 'rejects.parquet')})")


def read_videos(ingest_dir: str | Path) -> pd.DataFrame:
    """The kept-video table of an ingest folder (local or ``gs://``)."""
    return storage.read_parquet(storage.join(ingest_dir, "videos.parquet"))


