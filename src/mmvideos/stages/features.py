"""Stage 5, features: clip audio -> log-mel per 1-s frame, sharded with each clip's labels.

Reads the clip units' audio shards (by URI, from the clip manifest) and the label folder of
``merge_labels``; writes feature shards to the data root and the feature folder described in
:mod:`mmvideos.features.store`. Clips are processed in batches of
1-s frames (``batch_seconds``) on the CPU or a GPU; every second is transformed on its own, as
:func:`mmvideos.features.logmel.frames_per_second` does, so batching changes nothing but speed.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmvideos.data import dataroot, shards, storage
from mmvideos.data.atomic import atomic_path, write_json, write_parquet
from mmvideos.data.dataroot import DataRoot, unit_key
from mmvideos.data.runrecord import write_summary
from mmvideos.features import presets
from mmvideos.features.store import CONFIG, FEATURES, INDEX, VOCABULARY, encode_mel
from mmvideos.progress import progress_bar
from mmvideos.stages import clip

if TYPE_CHECKING:
    import torch

INDEX_COLUMNS = ["clip_id", "shard", "n_seconds", "split", "fold", "visual", "audio"]


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """``params.yaml: features``.

    Attributes:
        preset: log-mel front end, a key of ``presets.PRESETS``; ``paper`` (25 ms Hamming, 10 ms
            hop, 64 mel bins, 100 frames per second) is what the models take.
        batch_seconds: 1-s frames per transform batch; bounds memory (256 s: 16 MB of audio).
        device: ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``), or ``"auto"`` for CUDA when available.
    """

    preset: str = "paper"
    batch_seconds: int = 256
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.preset not in presets.PRESETS:
            raise ValueError(f"unknown log-mel preset {self.preset!r}; known: {sorted(presets.PRESETS)}")
        if self.batch_seconds < 1:
            raise ValueError(f"batch_seconds must be >= 1, got {self.batch_seconds}")
        if not (self.device in ("auto", "cpu") or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as given."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def feature_config_record(preset: str) -> dict:
    """The front-end settings of ``preset``, as written to ``config.json``."""
    settings, rate = presets.PRESETS[preset], presets.SAMPLE_RATE
    return {
        "preset": preset, "sample_rate": rate,
        "window": presets.WINDOW, "window_s": presets.WINDOW / rate, "window_type": settings.window,
        "hop": presets.HOP, "hop_s": presets.HOP / rate, "n_fft": presets.N_FFT,
        "mel_bins": presets.N_MELS, "fmin": presets.FMIN, "fmax": presets.FMAX, "mel_scale": "htk",
        "log_offset": settings.log_offset, "pad": settings.pad, "segment_s": 1.0,
        "frames_per_second": presets.num_frames(rate, preset), "dtype": "float16",
    }


def log_mel_seconds(waves: Sequence[np.ndarray], preset: str = "paper",
                    device: torch.device | str = "cpu") -> list[np.ndarray]:
    """16 kHz waveforms -> float16 ``[n_seconds, frames, 64]`` each, in one batched transform.

    Each waveform is cut into ``n_seconds = len // 16000`` non-overlapping seconds (the partial
    last second is dropped), all seconds are stacked into one ``[S, 16000]`` batch, and each row
    is transformed on its own.
    """
    import torch

    from mmvideos.features import logmel

    sr = logmel.SAMPLE_RATE
    counts = [len(w) // sr for w in waves]
    parts = [w[: n * sr].reshape(n, sr) for w, n in zip(waves, counts, strict=True) if n]
    if not parts:
        return [np.zeros((0, logmel.num_frames(sr, preset), logmel.N_MELS), np.float16) for _ in waves]
    seconds = torch.from_numpy(np.concatenate(parts).astype(np.float32, copy=False)).to(device)  # [S, 16000]
    mel = logmel.log_mel(seconds, sr, preset).to(torch.float16).cpu().numpy()  # [S, F, 64]
    return np.split(mel, np.cumsum(counts)[:-1])  # S rows back into one [n_i, F, 64] per waveform


class LabelLookup:
    """Vocabulary ids -> indices. An id is looked up with its modality first, so the same id
    from two annotators (e.g. a Freebase mid in both ML-Images and AudioSet) can map to two
    rows; ids that occur once in the vocabulary resolve whatever the modality."""

    def __init__(self, vocabulary: pd.DataFrame) -> None:
        index = vocabulary["index"].to_numpy()
        if not np.array_equal(np.sort(index), np.arange(len(vocabulary))):
            raise ValueError("vocabulary.parquet: 'index' must be 0..V-1")
        ids, modalities = vocabulary["id"].astype(str), vocabulary["modality"].astype(str)
        self._by_pair = {(m, i): int(k) for m, i, k in zip(modalities, ids, index, strict=True)}
        unique = set(ids.drop_duplicates(keep=False))
        self._by_id = {i: int(k) for i, k in zip(ids, index, strict=True) if i in unique}

    def __call__(self, modality: str, label_ids: Iterable[str] | None) -> np.ndarray:
        """int64 indices of ``label_ids`` (in their order; ``None`` is no labels); unknown ids
        raise ``ValueError``."""
        out = []
        for label in label_ids if label_ids is not None else ():
            k = self._by_pair.get((modality, str(label)), self._by_id.get(str(label)))
            if k is None:
                raise ValueError(f"{modality} label {label!r} is not in the vocabulary")
            out.append(k)
        return np.asarray(out, dtype=np.int64)


def slot_labels(labels_dir: str | Path, video_ids: Iterable[str]) -> pd.DataFrame:
    """merge_labels' rows of the clips of ``video_ids`` (a slot's videos), indexed by clip_id.

    The filter is pushed into the parquet scan: row groups are read one at a time and rows of
    other videos dropped as they are decoded, so a slot holds its own share of the label table,
    not the corpus' (gigabytes at 15 M clips), and only the columns the index needs.
    """
    columns = ["clip_id", "fold", "split", "visual_labels", "audio_labels", "label_ids"]
    with storage.local_copy(storage.join(labels_dir, "labels.parquet")) as path:
        wanted = pa.array(sorted(set(video_ids)), type=pa.string())  # typed: a slot may have no video
        table = pq.read_table(path, columns=columns, filters=pc.field("video_id").isin(wanted))
    return table.to_pandas().set_index("clip_id")


def extract_features(clips_dir: str | Path, labels_dir: str | Path, out_dir: str | Path, root: DataRoot,
                     cfg: FeatureConfig = FeatureConfig(), slot: int = 0, slots: int = 1,
                     progress: bool = True) -> dict:
    """Compute the log-mel features of the clip units of task ``slot`` and index them with their labels.

    Args:
        clips_dir: the clip stage's folder (manifest, ``clips.parquet``); local or gs://.
        labels_dir: merge_labels' folder (``labels.parquet``, ``vocabulary.parquet``); local or gs://.
        out_dir: local output folder: the manifest, ``index.parquet`` (this slot's labelled
            clips), ``vocabulary.parquet``, ``config.json`` (layout in :mod:`mmvideos.features.store`),
            ``labels.json`` (the labels' summary, for the model card).
        root: the data root the feature shards are written to and found in.
        cfg: front end, batch size and device.
        slot, slots: this task's share of the clip units.
        progress: show a progress bar over clips.

    A unit's feature shard is keyed by the audio shard's SHA-256 and the front end, not by the
    labels: re-annotating the clips reuses every feature shard.

    Returns:
        The summary also written to ``out_dir/summary.json``.
    """
    start = time.monotonic()
    out_dir = Path(out_dir)
    device = resolve_device(cfg.device)
    lookup = LabelLookup(storage.read_parquet(storage.join(labels_dir, VOCABULARY)))
    units = dataroot.slot_units(clips_dir, "audio.tar", root, slot, slots)
    clip.require_clip_units(clips_dir, units, root)
    labels = slot_labels(labels_dir, units["video_id"])
    bar = progress_bar(total=int(units["clips"].sum()), unit="clip", desc="features", disable=not progress)
    front_end = feature_config_record(cfg.preset)

    def compute(row, scratch: Path) -> tuple[dict, dict]:
        n_seconds: dict[str, int] = {}
        with shards.ShardWriter(scratch / FEATURES) as writer:
            pending: list[tuple[str, np.ndarray]] = []

            def flush() -> None:
                for (clip_id, _), mel in zip(pending, log_mel_seconds([w for _, w in pending], cfg.preset, device),
                                             strict=True):
                    writer.write(clip_id, encode_mel(mel))
                    n_seconds[clip_id] = len(mel)
                pending.clear()

            for clip_id, samples, rate in clip.iter_shard_audio(row.uri, row.sha256):
                samples = _to_16k(samples, rate)
                if len(samples) < presets.SAMPLE_RATE:
                    n_seconds[clip_id] = 0  # under one second: no feature
                    continue
                pending.append((clip_id, samples))
                if sum(len(w) for _, w in pending) >= cfg.batch_seconds * presets.SAMPLE_RATE:
                    flush()
            if pending:
                flush()
        return ({"video_id": row.video_id, "clips": len(n_seconds), "seconds": float(sum(n_seconds.values())),
                 "n_seconds": n_seconds}, {FEATURES: scratch / FEATURES})

    keyed = [(unit_key("features", input=row.sha256, front_end=front_end), row) for row in units.itertuples(index=False)]
    records, counts, _ = root.map_units("features", keyed, compute,
                                     lambda row, record, reused: bar.update(int(row.clips)))
    bar.close()
    rows: list[dict] = []
    skipped = {"unlabelled": 0, "too_short": 0}
    for record in records:
        uri = dataroot.unit_path("features", record["key"], FEATURES)  # relative: read against any data root
        for clip_id, n in sorted(record["n_seconds"].items()):
            if n == 0:
                skipped["too_short"] += 1
            elif clip_id not in labels.index:
                skipped["unlabelled"] += 1
            else:
                row = labels.loc[clip_id]
                targets = set(row["label_ids"])  # merge_labels' pick: labels it pruned (min_count) are no targets
                rows.append({"clip_id": clip_id, "shard": uri, "n_seconds": int(n), "split": str(row["split"]),
                             "fold": int(row["fold"]),
                             "visual": lookup("visual", [i for i in row["visual_labels"] if i in targets]).tolist(),
                             "audio": lookup("audio", [i for i in row["audio_labels"] if i in targets]).tolist()})
    index = pd.DataFrame(rows, columns=INDEX_COLUMNS).sort_values("clip_id", ignore_index=True)
    write_parquet(index, out_dir / INDEX)
    root.write_manifest("features", records, out_dir, slots)
    with storage.local_copy(storage.join(labels_dir, VOCABULARY)) as path, atomic_path(out_dir / VOCABULARY) as tmp:
        shutil.copyfile(path, tmp)
    write_json(front_end, out_dir / CONFIG)
    labels_summary = storage.join(labels_dir, "summary.json")  # for the model card: annotators, label statistics
    if storage.exists(labels_summary):
        write_json(json.loads(storage.read_bytes(labels_summary)), out_dir / "labels.json")
    summary = {
        "clips": len(index), "audio_seconds": int(index["n_seconds"].sum()),
        "clips_unlabelled": skipped["unlabelled"], "clips_too_short": skipped["too_short"],
        "shards": len(records), **counts.as_summary(), "preset": cfg.preset, "device": str(device),
        "seconds": round(time.monotonic() - start, 2),
    }
    write_summary(summary, out_dir)
    return summary


def _to_16k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Float32 samples at ``rate`` -> 16 kHz (the clip stage already writes 16 kHz)."""
    if rate == presets.SAMPLE_RATE:
        return samples
    import torch
    import torchaudio.functional

    return torchaudio.functional.resample(torch.from_numpy(samples), rate, presets.SAMPLE_RATE).numpy()


def feature_throughput(seconds: float = 60.0, device: str = "cpu", preset: str = "paper",
                       batch_seconds: int = 256) -> float:
    """Audio-seconds of features computed per wall-clock second per core (or per GPU).

    Times :func:`log_mel_seconds` (the stage's compute: 1-s framing, log-mel, float16, back to
    host memory) on ``seconds`` of noisy chirp, after one warm-up batch. Per core: on the CPU,
    torch is held to one thread while timing, so the figure is what one core does; the stage
    scales out by running one single-threaded task per shard. On CUDA it is per GPU.
    """
    import torch

    from mmvideos.features import logmel

    dev = resolve_device(device)
    rng = np.random.default_rng(0)
    n = max(1, int(seconds))
    t = np.arange(batch_seconds * logmel.SAMPLE_RATE) / logmel.SAMPLE_RATE
    chirp = 0.3 * np.sin(2 * np.pi * (200 + 60 * t) * t)
    batch = (chirp + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    sizes = [batch_seconds] * (n // batch_seconds) + ([n % batch_seconds] if n % batch_seconds else [])
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        torch.set_num_threads(1)
    try:
        log_mel_seconds([batch], preset, dev)  # warm-up: FFT plans, CUDA context, mel matrix
        began = time.perf_counter()
        for size in sizes:
            log_mel_seconds([batch[: size * logmel.SAMPLE_RATE]], preset, dev)
        elapsed = time.perf_counter() - began
    finally:
        torch.set_num_threads(threads)
    return n / elapsed
