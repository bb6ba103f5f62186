"""Stage 2, clip: cut every kept video into 3-5 s clips with 16 kHz audio and 3 fps frames.

The remainder rule (also in docs/data.md): a video of usable duration ``D`` (the span both its
streams cover) gets ``n = ceil(D / max_s)`` clips of equal length ``D / n``, which is within
[min_s, max_s] and covers the video exactly, for every ``D >= min_s`` except in the gap
``max_s < D < 2 * min_s`` (5 < D < 6 s with the defaults), where two clips would be shorter
than ``min_s``: such a video gets one ``max_s`` clip and its last ``D - max_s`` seconds (under
one second) are left out. Videos shorter than ``min_s`` are rejected at ingest.

Clipping is a map over videos: one *unit* per video in the data root (:mod:`mmvideos.data.dataroot`),
keyed by the video's content hash, its probed duration and the clip settings::

    clip/<k[:2]>/<k>/audio.tar    ``<clip_id>.wav``, mono 16-bit PCM at ``sample_rate``
    clip/<k[:2]>/<k>/frames.tar   ``<clip_id>.<k>.jpg`` (k = 00, 01, ...), ``frame_size`` square
                                  RGB, sampled at ``fps`` at times ``start + (k + 0.5) / fps``

Output folder (one writer: this module): ``manifest.parquet`` (the units' shards),
``clips.parquet`` (clip_id, video_id, start_s, end_s, fold, split, n_frames, shard = the unit
key), ``rejects.parquet`` (videos that failed to decode, with the reason), ``videos.parquet`` and
``settings.json`` (what it clipped, with which settings: enough to cut a unit again on another data
root), ``summary.json``.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import itertools
import json
import logging
import math
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mmvideos.data import dataroot, media, shards, storage
from mmvideos.data.atomic import scratch_dir, write_json, write_parquet
from mmvideos.data.dataroot import DataRoot, slot_of, unit_key
from mmvideos.data.files import sha256_file
from mmvideos.data.runrecord import write_summary
from mmvideos.progress import progress_bar
from mmvideos.stages.ingest import REJECT_COLUMNS, raise_unreadable

log = logging.getLogger(__name__)

CLIP_COLUMNS = ["clip_id", "video_id", "start_s", "end_s", "fold", "split", "n_frames", "shard"]
#: The clip folder's record of its input videos and settings, to make its units again elsewhere.
VIDEOS, SETTINGS = "videos.parquet", "settings.json"


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    """``params.yaml: clip``."""

    min_s: float = 3.0
    max_s: float = 5.0
    sample_rate: int = 16000
    fps: int = 3
    frame_size: int = 224
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"clip lengths need 0 < min_s <= max_s, got {self.min_s}, {self.max_s}")
        if self.fps <= 0 or self.sample_rate <= 0:
            raise ValueError("fps and sample_rate must be positive")


def plan_clips(duration_s: float, min_s: float = 3.0, max_s: float = 5.0) -> list[tuple[float, float]]:
    """Clip boundaries ``[(start, end), ...]`` covering ``[0, duration_s)`` (module docstring)."""
    if duration_s < min_s:
        return []
    n = math.ceil(duration_s / max_s - 1e-9)
    length = duration_s / n
    if length < min_s:  # the gap between max_s and 2 * min_s: one full clip, remainder left out
        n, length = 1, max_s
    return [(round(i * length, 4), round((i + 1) * length, 4)) for i in range(n)]


def frame_times(start: float, end: float, fps: int) -> list[float]:
    """Sample times at ``fps`` inside ``[start, end)``, centred in their 1/fps slots."""
    count = max(1, int(math.floor((end - start) * fps + 1e-6)))
    return [start + (k + 0.5) / fps for k in range(count)]


def clip_videos(videos: pd.DataFrame, out_dir: str | Path, cfg: ClipConfig, root: DataRoot,
                slot: int = 0, slots: int = 1, progress: bool = True) -> dict:
    """Cut the videos of task ``slot`` (of ``slots``) into clips under the data root.

    A video's clips are one unit, keyed by the video's content hash, its probed duration and
    the clip settings: a video clipped before (by any run on this root) is not decoded again.
    Writes into the local ``out_dir`` the manifest, ``clips.parquet``, ``rejects.parquet``, the
    videos and settings it clipped (``videos.parquet``, ``settings.json``: :func:`require_clip_units`)
    of this slot's videos, and returns the summary. A video whose content FFmpeg refuses is a
    committed reject (decoding it again would fail again); an I/O error while decoding
    (:class:`media.MediaUnreadable`) or a short read (retried by storage) is not, it is read again
    by the next run; one gone or rewritten since ingest
    (its bytes no longer match the probed SHA-256) is a reject of this run only; one that cannot
    be read now (a storage error that outlived its retries) fails the task once the others are
    done, so that no cache keeps a run that missed it.
    """
    out_dir = Path(out_dir)
    start_time = time.monotonic()
    videos = videos.sort_values("video_id")
    videos = videos[[slot_of(v, slots) == slot for v in videos["video_id"]]]
    bar = progress_bar(total=float(videos["duration_s"].sum()), unit="s", desc="clip", disable=not progress,
                       bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s video [{elapsed}<{remaining}]")
    settings = dataclasses.asdict(cfg)

    def compute(video, scratch: Path) -> tuple[dict, dict]:
        base = {"video_id": video.video_id}
        if not plan_clips(float(video.duration_s), cfg.min_s, cfg.max_s):
            return {**base, "rejected": f"too short for a clip: {float(video.duration_s):.2f} s, clip.min_s is "
                                        f"{cfg.min_s:g} s", "clips": 0}, {}
        try:
            rows = _clip_one(video, cfg, scratch / "audio.tar", scratch / "frames.tar")
        except media.MediaError as exc:
            log.warning("clip: %s rejected: %s", video.uri, exc)
            return {**base, "rejected": str(exc), "clips": 0}, {}
        seconds = round(sum(r["end_s"] - r["start_s"] for r in rows), 4)
        return {**base, "clips": len(rows), "seconds": seconds, "rows": rows}, \
            {"audio.tar": scratch / "audio.tar", "frames.tar": scratch / "frames.tar"}

    items = [(unit_key("clip", sha256=video.sha256, duration_s=float(video.duration_s), settings=settings), video)
             for video in videos.itertuples(index=False)]
    # a file gone since ingest, or a storage error, is not the content's fault: not committed
    records, counts, skipped = root.map_units("clip", items, compute,
                                              lambda video, *_: bar.update(float(video.duration_s)),
                                              skip=storage.transient_errors())
    bar.close()
    # gone or rewritten since ingest: a reject of this run (re-ingest sees the change);
    # could not be read now: the stage fails below, after keeping what it finished
    unreadable = [(video.uri, exc) for video, exc in skipped if not isinstance(exc, FileNotFoundError)]
    transient = [{"uri": video.uri, "video_id": video.video_id, "stage": "clip",
                  "reason": f"gone or changed since ingest: {exc}; ingest again"} for video, exc in skipped
                 if isinstance(exc, FileNotFoundError)]
    for video, exc in skipped:
        log.warning("clip: %s cannot be read now: %s", video.uri, exc)
    by_id = videos.set_index("video_id")
    clip_rows = [{**row, "fold": int(by_id.at[r["video_id"], "fold"]), "split": by_id.at[r["video_id"], "split"],
                  "shard": r["key"]}
                 for r in records for row in r.get("rows", [])]
    rejects = [{"uri": by_id.at[r["video_id"], "uri"], "video_id": r["video_id"], "reason": r["rejected"],
                "stage": "clip"} for r in records if r.get("rejected")] + transient
    clips = pd.DataFrame(clip_rows, columns=CLIP_COLUMNS)
    rejected = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    write_parquet(clips, out_dir / "clips.parquet")
    write_parquet(rejected, out_dir / "rejects.parquet")
    root.write_manifest("clip", records, out_dir, slots)
    # what a reader on another data root needs to make these units again (require_clip_units)
    write_parquet(videos.reset_index(drop=True), out_dir / VIDEOS)
    write_json(settings, out_dir / SETTINGS)
    summary = {**_summary(clips, rejected, videos_in=len(videos), seconds=time.monotonic() - start_time),
               **counts.as_summary()}
    write_summary(summary, out_dir)
    if unreadable:
        raise_unreadable("clip", unreadable, len(videos))
    return summary


def _generation(video) -> int | None:
    """The GCS generation ingest read (``None`` for a local file or an older videos table)."""
    generation = getattr(video, "generation", None)
    return None if generation is None or generation != generation else int(generation)


def _clip_one(video, cfg: ClipConfig, audio_path: Path, frames_path: Path) -> list[dict]:
    """Decode one video into its two shards; returns the clip rows (without fold and split)."""
    plan = plan_clips(float(video.duration_s), cfg.min_s, cfg.max_s)
    ids = [f"{video.video_id}-{i:03d}" for i in range(len(plan))]
    # a download shorter than its object is retried by storage (ShortRead); bytes that still differ
    # from the probed SHA-256 are another file than the one ingested
    with storage.local_copy(video.uri, _generation(video)) as path:
        if getattr(video, "sha256", None) and sha256_file(path) != video.sha256:  # local files have no generation
            raise FileNotFoundError(f"{video.uri} was rewritten since ingest (its SHA-256 differs)")
        with shards.ShardWriter(audio_path) as audio_out:
            for clip_id, pcm in zip(ids, _cut_audio(path, plan, cfg.sample_rate)):
                audio_out.write(clip_id, {"wav": shards.wav_bytes(pcm, cfg.sample_rate)})
        per_clip = [(clip_id, frame_times(s, e, cfg.fps)) for clip_id, (s, e) in zip(ids, plan)]
        frames = media.iter_frames(path, [t for _, ts in per_clip for t in ts], cfg.frame_size)
        n_frames = {}
        with shards.ShardWriter(frames_path) as frames_out:
            for clip_id, ts in per_clip:
                group = {f"{k:02d}.jpg": _jpeg(rgb, cfg.jpeg_quality)
                         for k, (_, rgb) in enumerate(itertools.islice(frames, len(ts)))}
                frames_out.write(clip_id, group)
                n_frames[clip_id] = len(group)
    return [{"clip_id": cid, "video_id": video.video_id, "start_s": s, "end_s": e, "n_frames": n_frames[cid]}
            for cid, (s, e) in zip(ids, plan)]


def _cut_audio(path: Path, plan: list[tuple[float, float]], sample_rate: int) -> Iterator[np.ndarray]:
    """Stream the audio once and yield it sliced at the plan's boundaries (in samples)."""
    bounds = [(round(s * sample_rate), round(e * sample_rate)) for s, e in plan]
    buf = np.zeros(0, dtype=np.int16)
    offset = 0  # sample index of buf[0]
    i = 0
    for chunk in media.iter_audio(path, sample_rate):
        buf = np.concatenate([buf, chunk])
        while i < len(bounds) and offset + buf.size >= bounds[i][1]:
            s, e = bounds[i]
            yield buf[s - offset:e - offset].copy()
            i += 1
            if i < len(bounds):
                drop = bounds[i][0] - offset
                buf, offset = buf[drop:], offset + drop
        if i == len(bounds):
            break
    if i < len(bounds):
        short = bounds[i][1] - (offset + buf.size)
        if short > sample_rate // 10:
            raise media.MediaError(f"audio ends {short / sample_rate:.2f} s before the probed duration")
        for s, e in bounds[i:]:  # pad the last few ms the container over-reported
            seg = buf[max(0, s - offset):e - offset]
            yield np.pad(seg, (0, (e - s) - seg.size))


def _jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def iter_clip_audio(clips_dir: str | Path, root: DataRoot) -> Iterator[tuple[str, np.ndarray, int]]:
    """Stream ``(clip_id, float32 mono samples, sample_rate)`` over every audio shard of a clip folder (in ``root``)."""
    for row in _shard_rows(clips_dir, "audio", root):
        yield from iter_shard_audio(row.uri, row.sha256)


def iter_clip_frames(clips_dir: str | Path, root: DataRoot) -> Iterator[tuple[str, np.ndarray]]:
    """Stream ``(clip_id, uint8 frames [n, H, W, 3])`` over every frames shard of a clip folder (in ``root``)."""
    for row in _shard_rows(clips_dir, "frames", root):
        yield from iter_shard_frames(row.uri, row.sha256)


def require_clip_units(clips_dir: str | Path, rows: pd.DataFrame, root: DataRoot) -> None:
    """Make sure ``root`` holds the clip units of manifest ``rows`` (of the clip folder ``clips_dir``).

    A clip folder pulled into another clone names units its data root may not hold yet: they are
    cut again, by this stage's code from the videos and settings the folder records
    (``videos.parquet``, ``settings.json``), into this root, where their keys find them. A unit
    that cannot be made again is an error naming it (:meth:`DataRoot.require`)."""
    def remake() -> None:
        with storage.local_copy(storage.join(clips_dir, VIDEOS)) as path:
            videos = pd.read_parquet(path)
        cfg = ClipConfig(**json.loads(storage.read_bytes(storage.join(clips_dir, SETTINGS))))
        with scratch_dir("clip") as scratch:
            clip_videos(videos, scratch, cfg, root, progress=False)

    recorded = storage.exists(storage.join(clips_dir, VIDEOS)) and storage.exists(storage.join(clips_dir, SETTINGS))
    root.require(rows, clips_dir, remake if recorded else None)


def _shard_rows(clips_dir: str | Path, kind: str, root: DataRoot):
    manifest = dataroot.read_manifest(clips_dir)
    rows = manifest[manifest["file"] == f"{kind}.tar"]
    require_clip_units(clips_dir, rows, root)
    return root.resolved(rows).itertuples(index=False)


def iter_shard_audio(uri: str, sha256: str = "") -> Iterator[tuple[str, np.ndarray, int]]:
    """Stream ``(clip_id, float32 mono samples, sample_rate)`` from one audio shard, verified
    against ``sha256`` (its manifest row's) when given (:func:`mmvideos.data.shards.iter_shard`)."""
    for clip_id, group in shards.iter_shard(uri, sha256):
        samples, rate = shards.read_wav(group["wav"])
        yield clip_id, samples, rate


def iter_shard_frames(uri: str, sha256: str = "", pool: Executor | None = None,
                      ahead: int = 16) -> Iterator[tuple[str, np.ndarray]]:
    """Stream ``(clip_id, uint8 frames [n, H, W, 3])`` from one frames shard (verified as above).

    With ``pool`` (a process pool) the JPEGs are decoded in its workers, up to ``ahead`` clips
    ahead of the consumer and in shard order, so the process that runs the model (a GPU's) does not wait
    on decoding; the frames are the same.
    """
    groups = shards.iter_shard(uri, sha256)
    if pool is None:
        yield from ((clip_id, decode_frames(group)) for clip_id, group in groups)
        return
    waiting: collections.deque = collections.deque()
    for clip_id, group in groups:
        waiting.append((clip_id, pool.submit(decode_frames, group)))
        if len(waiting) >= ahead:
            clip_id, future = waiting.popleft()
            yield clip_id, future.result()
    while waiting:
        clip_id, future = waiting.popleft()
        yield clip_id, future.result()


def decode_frames(group: dict[str, bytes]) -> np.ndarray:
    """A clip's JPEG frames (``{name: bytes}``, in name order) -> uint8 ``[n, H, W, 3]``."""
    return np.stack([np.asarray(Image.open(io.BytesIO(group[k])).convert("RGB")) for k in sorted(group)])


def read_clips(clips_dir: str | Path) -> pd.DataFrame:
    """The clip table of a clip folder."""
    return storage.read_parquet(storage.join(clips_dir, "clips.parquet"))


def _summary(clips: pd.DataFrame, rejects: pd.DataFrame, videos_in: int, seconds: float) -> dict:
    return {
        "videos_in": int(videos_in),
        "videos_clipped": int(clips["video_id"].nunique()),
        "videos_rejected": len(rejects),
        "clips": len(clips),
        "audio_hours": round(float((clips["end_s"] - clips["start_s"]).sum()) / 3600, 4),
        "frames": int(clips["n_frames"].sum()),
        "seconds": round(seconds, 1),
    }
