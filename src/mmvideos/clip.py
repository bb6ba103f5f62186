"""Stage 2, clip: cut every kept video into 3-5 s clips with 16 kHz audio and 3 fps frames.

The remainder rule (also in docs/data.md): a video of usable duration ``D`` (the span both its
streams cover) gets ``n = ceil(D / max_s)`` clips of equal length ``D / n``, which is within
[min_s, max_s] and covers the video exactly, for every ``D >= min_s`` except in the gap
``max_s < D < 2 * min_s`` (5 < D < 6 s with the defaults), where two clips would be shorter
than ``min_s``: such a video gets one ``max_s`` clip and its last ``D - max_s`` seconds (under
one second) are left out. Videos shorter than ``min_s`` are rejected at ingest.

Output folder (one writer: this module):

* ``clips.parquet``: clip_id, video_id, start_s, end_s, fold, split, n_frames, shard
* ``audio/<shard>.tar``: ``<clip_id>.wav``, mono 16-bit PCM at ``sample_rate``
* ``frames/<shard>.tar``: ``<clip_id>.<k>.jpg`` (k = 00, 01, ...), ``frame_size`` square RGB,
  sampled at ``fps`` at times ``start + (k + 0.5) / fps``
* ``rejects.parquet``: videos that failed to decode here, with the reason
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mmvideos import media, shards, storage
from mmvideos.atomic import write_json, write_parquet
from mmvideos.ingest import REJECT_COLUMNS, video_location
from mmvideos.progress import progress_bar

log = logging.getLogger(__name__)

CLIP_COLUMNS = ["clip_id", "video_id", "start_s", "end_s", "fold", "split", "n_frames", "shard"]


@dataclasses.dataclass(frozen=True)
class ClipConfig:
    """``params.yaml: clip``."""

    min_s: float = 3.0
    max_s: float = 5.0
    sample_rate: int = 16000
    fps: int = 3
    frame_size: int = 224
    jpeg_quality: int = 90
    num_shards: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"clip lengths need 0 < min_s <= max_s, got {self.min_s}, {self.max_s}")
        if self.fps <= 0 or self.sample_rate <= 0 or self.num_shards <= 0:
            raise ValueError("fps, sample_rate and num_shards must be positive")


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


def shard_of(fold: int, num_folds: int, num_shards: int) -> int:
    """Shard index of a fold: shards are contiguous fold ranges."""
    return fold * num_shards // num_folds


def shard_name(index: int) -> str:
    """``shard-00003``."""
    return f"shard-{index:05d}"


def clip_videos(videos: pd.DataFrame, out_dir: str | Path, cfg: ClipConfig, num_folds: int = 4096,
                shard_index: int | None = None, progress: bool = True) -> dict:
    """Cut ``videos`` (ingest's table) into clips under ``out_dir``; returns a summary dict.

    With ``shard_index`` only the videos of that shard's fold range are processed (one task of
    a fan-out); otherwise every shard is written in turn. Each video is read from its copy in
    the ingest folder when ingest made one (``media``, resolved by ``read_videos``), else from
    its ``uri``.
    """
    out_dir = Path(out_dir)
    start_time = time.monotonic()
    videos = videos.sort_values("video_id").assign(
        shard=[shard_of(int(f), num_folds, cfg.num_shards) for f in videos["fold"]])
    indices = [shard_index] if shard_index is not None else range(cfg.num_shards)
    clip_rows: list[dict] = []
    rejects: list[dict] = []
    bar = progress_bar(total=float(videos.loc[videos["shard"].isin(list(indices)), "duration_s"].sum()),
               unit="s", desc="clip", disable=not progress, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s video [{elapsed}<{remaining}]")
    for index in indices:
        name = shard_name(index)
        todo = videos[videos["shard"] == index]
        with shards.ShardWriter(out_dir / "audio" / f"{name}.tar") as audio_out, \
                shards.ShardWriter(out_dir / "frames" / f"{name}.tar") as frames_out:
            for video in todo.itertuples(index=False):
                try:
                    rows = _clip_one(video, cfg, name, audio_out, frames_out)
                except media.MediaError as exc:
                    log.warning("clip: %s rejected: %s", video.uri, exc)
                    rejects.append({"uri": video.uri, "video_id": video.video_id, "reason": str(exc), "stage": "clip"})
                else:
                    clip_rows.extend(rows)
                bar.update(float(video.duration_s))
    bar.close()
    if shard_index is None:  # the whole set: shards of an earlier run with more shards go
        written = {f"{shard_name(i)}.tar" for i in indices}
        for stale in [*out_dir.glob("audio/*.tar"), *out_dir.glob("frames/*.tar")]:
            if stale.name not in written:
                stale.unlink()
    clips = pd.DataFrame(clip_rows, columns=CLIP_COLUMNS)
    write_parquet(clips, out_dir / "clips.parquet")
    rejected = pd.DataFrame(rejects, columns=REJECT_COLUMNS)
    write_parquet(rejected, out_dir / "rejects.parquet")
    summary = _summary(clips, rejected,
                       videos_in=int(videos["shard"].isin(list(indices)).sum()),
                       seconds=time.monotonic() - start_time)
    write_json(summary, out_dir / "summary.json")
    return summary


def _clip_one(video, cfg: ClipConfig, shard: str, audio_out: shards.ShardWriter,
              frames_out: shards.ShardWriter) -> list[dict]:
    """Decode one video into spooled per-clip payloads; append them to the shards only once the
    whole video decoded, so a failure half-way leaves no partial video behind."""
    plan = plan_clips(float(video.duration_s), cfg.min_s, cfg.max_s)
    ids = [f"{video.video_id}-{i:03d}" for i in range(len(plan))]
    with storage.local_copy(video_location(video)) as path, \
            tempfile.TemporaryFile() as audio_spool, tempfile.TemporaryFile() as frames_spool:
        with shards.ShardWriter.to_file(audio_spool) as spool:
            for clip_id, pcm in zip(ids, _cut_audio(path, plan, cfg.sample_rate)):
                spool.write(clip_id, {"wav": shards.wav_bytes(pcm, cfg.sample_rate)})
        per_clip = [(clip_id, frame_times(s, e, cfg.fps)) for clip_id, (s, e) in zip(ids, plan)]
        frames = media.iter_frames(path, [t for _, ts in per_clip for t in ts], cfg.frame_size)
        n_frames = {}
        with shards.ShardWriter.to_file(frames_spool) as spool:
            for clip_id, ts in per_clip:
                group = {f"{k:02d}.jpg": _jpeg(rgb, cfg.jpeg_quality)
                         for k, (_, rgb) in enumerate(itertools.islice(frames, len(ts)))}
                spool.write(clip_id, group)
                n_frames[clip_id] = len(group)
        for spool_file, writer in ((audio_spool, audio_out), (frames_spool, frames_out)):
            spool_file.seek(0)
            for key, payload in shards.iter_tar(spool_file):
                writer.write(key, payload)
    return [
        {"clip_id": cid, "video_id": video.video_id, "start_s": s, "end_s": e, "fold": int(video.fold),
         "split": video.split, "n_frames": n_frames[cid], "shard": shard}
        for cid, (s, e) in zip(ids, plan)
    ]


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


def clip_shards(clips_dir: str | Path, kind: str) -> list[str]:
    """URIs of a clip folder's ``audio`` or ``frames`` shards that its clip table names.

    Shards left in the folder by an earlier run with other settings are not read.
    """
    named = set(read_clips(clips_dir)["shard"])
    return [uri for uri in shards.list_shards(storage.join(clips_dir, kind))
            if shards.stem(uri) in named]


def iter_clip_audio(clips_dir: str | Path) -> Iterator[tuple[str, np.ndarray, int]]:
    """Stream ``(clip_id, float32 mono samples, sample_rate)`` over a clip folder's audio shards."""
    for uri in clip_shards(clips_dir, "audio"):
        for clip_id, group in shards.iter_shard(uri):
            samples, rate = shards.read_wav(group["wav"])
            yield clip_id, samples, rate


def iter_clip_frames(clips_dir: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """Stream ``(clip_id, uint8 frames [n, H, W, 3])`` over a clip folder's frame shards."""
    for uri in clip_shards(clips_dir, "frames"):
        for clip_id, group in shards.iter_shard(uri):
            frames = [np.asarray(Image.open(io.BytesIO(group[k])).convert("RGB")) for k in sorted(group)]
            yield clip_id, np.stack(frames)


def read_clips(clips_dir: str | Path) -> pd.DataFrame:
    """The clip table of a clip folder."""
    return storage.read_parquet(storage.join(clips_dir, "clips.parquet"))



def gather(shard_dirs: list[str | Path], out_dir: str | Path) -> dict:
    """Merge clip folders written by per-shard tasks into one clip folder (hard links where the
    file system allows, else copies); returns the merged summary."""
    out_dir = Path(out_dir)
    tables, rejects, seconds = [], [], 0.0
    for shard_dir in map(Path, shard_dirs):
        tables.append(pd.read_parquet(shard_dir / "clips.parquet"))
        rejects.append(pd.read_parquet(shard_dir / "rejects.parquet"))
        seconds += json.loads((shard_dir / "summary.json").read_text())["seconds"]
        for tar in sorted(shard_dir.glob("*/*.tar")):
            target = out_dir / tar.parent.name / tar.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(tar, target)
            except OSError:
                shutil.copyfile(tar, target)
    clips = _concat(tables, CLIP_COLUMNS).sort_values("clip_id", ignore_index=True)
    rejected = _concat(rejects, REJECT_COLUMNS)
    write_parquet(clips, out_dir / "clips.parquet")
    write_parquet(rejected, out_dir / "rejects.parquet")
    summary = _summary(clips, rejected, videos_in=clips["video_id"].nunique() + len(rejected), seconds=seconds)
    write_json(summary, out_dir / "summary.json")
    return summary


def _concat(tables: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    non_empty = [t for t in tables if not t.empty]
    return pd.concat(non_empty, ignore_index=True) if non_empty else pd.DataFrame(columns=columns)


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
