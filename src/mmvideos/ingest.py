"""Stage 1, ingest: discover videos, probe them, keep those with sound and picture.

Every input URI ends up in exactly one of two tables (one writer: this module):

* ``videos.parquet``: video_id, uri, sha256, size_bytes, duration_s, video_codec, width, height,
  fps, audio_codec, sample_rate, channels, fold, split
* ``rejects.parquet``: uri, video_id (when known), reason, stage

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
import time
import uuid
from pathlib import Path

import pandas as pd

from mmvideos import media, storage
from mmvideos.atomic import write_json, write_parquet
from mmvideos.corpus import sha256_file
from mmvideos.progress import progress_bar

log = logging.getLogger(__name__)

#: Namespace of content-derived video ids (uuid5 over the SHA-256 hex digest).
VIDEO_NAMESPACE = uuid.UUID("6f3c1d2e-5b7a-4c1e-9a8d-2f4b6c8e0a1d")

REJECT_COLUMNS = ["uri", "video_id", "reason", "stage"]
VIDEO_COLUMNS = ["video_id", "uri", "sha256", "size_bytes", "duration_s", "video_codec", "width",
                 "height", "fps", "audio_codec", "sample_rate", "channels", "fold", "split"]


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
           progress: bool = True) -> dict:
    """Probe every video of ``source`` and write ``videos.parquet`` and ``rejects.parquet``.

    ``source`` is a local folder, a ``gs://`` prefix or a CSV/text list of URIs
    (``mmvideos.storage.list_source``). Returns a summary dict (also ``summary.json``).
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
        "fold": fold, "split": split_of(fold, cfg.val_every_n_folds, cfg.val_part),
    }, ""


def read_videos(ingest_dir: str | Path) -> pd.DataFrame:
    """The kept-video table of an ingest folder."""
    return pd.read_parquet(Path(ingest_dir) / "videos.parquet")
