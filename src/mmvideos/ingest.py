"""Stage 1, ingest: discover videos, probe them, keep those with sound and picture.

Every input URI ends up in exactly one of two tables (one writer: this module):

* ``videos.parquet``: video_id, uri, sha256, size_bytes, duration_s, video_codec, width, height,
  fps, audio_codec, sample_rate, channels, fold, split, media
* ``rejects.parquet``: uri, video_id (when known), reason, stage
* ``media/<video_id><ext>``: with ``copy_media``, the bytes of every kept video that is not a
  ``gs://`` object, so that tasks on other machines (the clip pods of a cluster, which do not
  see the ingest pod's disk) find them in the artifact they are given. ``media`` holds that
  path relative to the ingest folder (empty otherwise) and ``read_videos`` resolves it against
  the folder it reads, wherever that folder has been moved or downloaded to.

The video id is a UUID derived from the file's content (``uuid5`` of its SHA-256), so
re-ingesting the same bytes gives the same id wherever they live, and a second copy is
rejected as a duplicate of the first (in URI order). ``fold = hash(UUID) mod num_folds`` and
the split follows the fold: of every ``val_every_n_folds`` consecutive fold residues, the one
equal to ``val_part`` is validation (paper: 14 M train, 1 M val, 4,096 folds).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd

from mmvideos import media, storage
from mmvideos.atomic import write_json, write_parquet
from mmvideos.corpus import DEMO_VIDEOS, sha256_file
from mmvideos.progress import progress_bar

log = logging.getLogger(__name__)

#: Namespace of content-derived video ids (uuid5 over the SHA-256 hex digest).
VIDEO_NAMESPACE = uuid.UUID("6f3c1d2e-5b7a-4c1e-9a8d-2f4b6c8e0a1d")

REJECT_COLUMNS = ["uri", "video_id", "reason", "stage"]
VIDEO_COLUMNS = ["video_id", "uri", "sha256", "size_bytes", "duration_s", "video_codec", "width",
                 "height", "fps", "audio_codec", "sample_rate", "channels", "fold", "split", "media"]

#: Folder of an ingest output that holds the copied videos (``copy_media``).
MEDIA_DIR = "media"


@dataclasses.dataclass(frozen=True)
class IngestConfig:
    """``params.yaml: ingest``."""

    min_duration_s: float = 3.0
    num_folds: int = 4096
    val_every_n_folds: int = 15
    val_part: int = 14

    def __post_init__(self) -> None:
        if self.num_folds <= 0 or self.val_every_n_folds <= 0:
            raise ValueError("num_folds and val_every_n_folds must be positive")
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


def ingest(source: str | Path, out_dir: str | Path, cfg: IngestConfig = IngestConfig(),
           progress: bool = True, copy_media: bool = False) -> dict:
    """Probe every video of ``source`` and write ``videos.parquet`` and ``rejects.parquet``.

    ``source`` is a local folder, a ``gs://`` prefix or a CSV/text list of URIs
    (``mmvideos.storage.list_source``). With ``copy_media`` every kept video that is not a
    ``gs://`` object is also placed under ``out_dir/media/`` (a hard link where the file system
    allows, else a copy) and the ``media`` column names it: the Kubeflow component does this,
    because the next task runs in another pod that only receives this folder; the CLI and DVC
    run every stage on one machine and leave it off. Returns a summary dict (also
    ``summary.json``).
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    uris = storage.list_source(source)
    kept: list[dict] = []
    rejects: list[dict] = []
    seen: dict[str, str] = {}  # sha256 -> first uri
    for uri in progress_bar(uris, desc="ingest", unit="file", disable=not progress):
        row, reason = _examine(uri, cfg)
        if row is not None and row["sha256"] in seen:
            row, reason = None, f"duplicate of {seen[row['sha256']]}"
        if row is None:
            rejects.append({"uri": uri, "video_id": None, "reason": reason, "stage": "ingest"})
            log.info("ingest: rejected %s: %s", uri, reason)
            continue
        seen[row["sha256"]] = uri
        kept.append(row)
    videos = pd.DataFrame(kept, columns=VIDEO_COLUMNS).sort_values("video_id", ignore_index=True)
    videos["media"] = place_media(videos, out_dir) if copy_media else None
    rejected = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    write_parquet(videos, out_dir / "videos.parquet")
    write_parquet(rejected, out_dir / "rejects.parquet")
    summary = {
        "inputs": len(uris),
        "videos_kept": len(videos),
        "videos_rejected": len(rejected),
        "hours_of_video": round(float(videos["duration_s"].sum()) / 3600, 4),
        "train_videos": int((videos["split"] == "train").sum()),
        "val_videos": int((videos["split"] == "val").sum()),
        "seconds": round(time.monotonic() - started, 1),
    }
    write_json(summary, out_dir / "summary.json")
    return summary


def _examine(uri: str, cfg: IngestConfig) -> tuple[dict | None, str]:
    """Probe one input: its manifest row, or ``None`` and the reason it is rejected."""
    try:
        with storage.local_copy(uri) as path:
            size = path.stat().st_size
            if size == 0:
                return None, "empty file"
            sha = sha256_file(path)
            info = media.probe(path)
    except FileNotFoundError:
        return None, "file not found"
    except media.MediaError as exc:
        return None, str(exc)
    except Exception as exc:  # storage errors (permissions, network): say which, keep going
        return None, f"cannot be read: {type(exc).__name__}: {exc}"
    if not info.has_video and not info.has_audio:
        return None, "no audio and no video stream"
    if not info.has_audio:
        return None, "no audio stream (picture only)"
    if not info.has_video:
        return None, "no video stream (sound only)"
    if info.duration_s < cfg.min_duration_s:
        return None, f"too short: {info.duration_s:.2f} s, a clip needs at least {cfg.min_duration_s:g} s"
    video_id = video_id_for(sha)
    fold = fold_of(video_id, cfg.num_folds)
    return {
        "video_id": video_id, "uri": uri, "sha256": sha, "size_bytes": size,
        **{k: v for k, v in dataclasses.asdict(info).items() if k not in ("has_video", "has_audio")},
        "fold": fold, "split": split_of(fold, cfg.val_every_n_folds, cfg.val_part), "media": None,
    }, ""


def place_media(videos: pd.DataFrame, out_dir: str | Path) -> list[str | None]:
    """Put every non-``gs://`` video of ``videos`` under ``out_dir/media/<video_id><ext>``.

    Returns the ``media`` column: those paths relative to ``out_dir`` (``None`` for ``gs://``
    URIs, which every pod reads as they are). Files of an earlier run that are no longer kept
    are removed, so the folder holds exactly the table's videos.
    """
    out_dir = Path(out_dir)
    names: list[str | None] = []
    for video_id, uri in zip(videos["video_id"], videos["uri"]):
        if storage.is_gcs(uri):
            names.append(None)
            continue
        name = f"{MEDIA_DIR}/{video_id}{Path(uri).suffix.lower()}"
        link_or_copy(Path(uri), out_dir / name)
        names.append(name)
    media_dir = out_dir / MEDIA_DIR
    if media_dir.is_dir():
        for stale in sorted(set(media_dir.iterdir()) - {out_dir / n for n in names if n}):
            stale.unlink()
    return names


def link_or_copy(source: Path, target: Path) -> None:
    """Make ``target`` hold ``source``'s bytes, atomically: a hard link when both are on one file
    system, else a copy. Readers see the old target or the whole new one, never a partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            os.link(source, tmp)
        except OSError:  # another file system (EXDEV), or links not supported
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def read_videos(ingest_dir: str | Path) -> pd.DataFrame:
    """The kept-video table of an ingest folder (local or ``gs://``), its ``media`` paths
    resolved against that folder (``None`` where a video is read from its ``uri``)."""
    if not storage.is_gcs(str(ingest_dir)):
        ingest_dir = Path(ingest_dir).resolve()  # media paths come out absolute, valid from any directory
    videos = storage.read_parquet(storage.join(ingest_dir, "videos.parquet"))
    if "media" not in videos:  # written before the column existed
        videos["media"] = None
    videos["media"] = [storage.join(ingest_dir, m) if isinstance(m, str) and m else None for m in videos["media"]]
    return videos


def video_location(video) -> str:
    """Where a video's bytes are read from: its copy in the ingest folder, else its ``uri``.

    ``video`` is a row of ``read_videos`` (anything with ``uri`` and optionally ``media``).
    """
    media = getattr(video, "media", None)
    if not isinstance(media, str) or not media:
        return video.uri
    if not (storage.is_gcs(media) or os.path.isabs(media)):
        raise ValueError(f"media path {media!r} is relative to its ingest folder: read videos.parquet "
                         "with mmvideos.ingest.read_videos(folder), which resolves it")
    return media


def source_fingerprint(source: str | Path) -> str:
    """A SHA-256 over the sorted ``(uri, size, version)`` of every file of ``source``.

    It changes when a video is added, removed, renamed or rewritten (a new mtime locally, a new
    generation on GCS) and costs one listing, no reads: the pipeline's never-cached first step
    computes it so that ingest, whose cache key includes it, re-runs exactly when the source
    changed. ``""`` (the demo corpus) fingerprints the pinned SHA-256s without fetching anything.
    """
    digest = hashlib.sha256()
    for uri, size, version in sorted(source_entries(source)):
        digest.update(f"{uri}\t{size}\t{version}\n".encode())
    return digest.hexdigest()


def source_entries(source: str | Path) -> list[tuple[str, int, str]]:
    """``(uri, size, version)`` of every file of ``source`` (see ``source_fingerprint``).

    ``version`` is the mtime in nanoseconds for a local file, ``<generation>:<md5>`` for a GCS
    object, ``missing`` (size -1) for a listed URI that does not exist.
    """
    source = str(source)
    if not source:
        return [(f"demo:{v.name}", -1, v.sha256) for v in DEMO_VIDEOS]
    uris = storage.list_source(source)
    return ([_local_entry(uri) for uri in uris if not storage.is_gcs(uri)]
            + _gcs_entries([uri for uri in uris if storage.is_gcs(uri)]))


def _local_entry(uri: str) -> tuple[str, int, str]:
    try:
        stat = os.stat(uri)
    except FileNotFoundError:
        return uri, -1, "missing"
    return uri, stat.st_size, str(stat.st_mtime_ns)


def _gcs_entries(uris: list[str]) -> list[tuple[str, int, str]]:
    """Entries of listed ``gs://`` URIs: one listing per bucket, of their longest common folder."""
    entries = []
    by_bucket: dict[str, list[str]] = {}
    for uri in uris:
        by_bucket.setdefault(storage.split_gcs(uri)[0], []).append(uri)
    for bucket, members in sorted(by_bucket.items()):
        folder = os.path.commonprefix([storage.split_gcs(uri)[1] for uri in members]).rpartition("/")[0]
        listed = _gcs_versions(f"{storage.GCS_PREFIX}{bucket}/{folder}")
        entries += [(uri, *listed.get(uri, (-1, "missing"))) for uri in members]
    return entries


def _gcs_versions(prefix_uri: str) -> dict[str, tuple[int, str]]:
    """``{uri: (size, "<generation>:<md5>")}`` of the objects under a ``gs://`` prefix (one listing)."""
    bucket, key = storage.split_gcs(prefix_uri)
    blobs = storage.gcs_client().list_blobs(bucket, prefix=key)
    return {f"{storage.GCS_PREFIX}{bucket}/{b.name}": (int(b.size or 0), f"{b.generation}:{b.md5_hash}")
            for b in blobs if not b.name.endswith("/")}
