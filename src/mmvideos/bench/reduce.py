"""The reduce-side scale benchmark (``mmvideos bench --scale --reduce``): does a whole-corpus step
stay bounded in memory as the corpus grows?

It writes synthetic slot outputs of the clip and annotate stages with the stages' own writers and
schemas (:func:`write_synthetic`: 10 clips a video, the paper's 11,693 categories, 11,166 visual
and 527 audio, drawn Zipf-distributed), then runs each reduce step (:data:`STEPS`) on them in a
child process of its own and records the child's peak RSS and seconds. Over the corpus sizes it
fits ``peak = a + b * clips`` and ``seconds = c * clips ** k`` and extrapolates both to the paper's
15 M clips. The figures go to ``scale.json`` under ``reduce``; ``mmvideos docs`` writes them into
docs/sizing.md (:func:`mmvideos.bench.scale.sizing_plan`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mmvideos.bench import REDUCE_STEPS
from mmvideos.data import dataroot
from mmvideos.data.atomic import write_json, write_parquet, write_text
from mmvideos.features.store import encode_mel

#: The paper's vocabulary: ML-Images' visual classes and AudioSet's.
VISUAL_CLASSES, AUDIO_CLASSES = 11_166, 527
CLIPS_PER_VIDEO = 10
#: Each reduce step, in the order they run (each reads what the ones before wrote).
STEPS = REDUCE_STEPS
PAPER_CLIPS = 15_000_000
#: The synthetic feature units' frames per clip: 10, not a real 10-s clip's 1,000, so 10^6 clips
#: take 2.5 GB of disk, not 130 GB. The pack target is scaled by the bytes a clip takes (its array
#: and about 1 kB of tar and .npy headers), so the packs per clip are those of real features
#: packed with the default ``pack_mb`` (512).
FEATURE_FRAMES, MEL_BINS = 10, 64
PACK_MB = 512 * (FEATURE_FRAMES * MEL_BINS * 2 + 1024) / (1000 * MEL_BINS * 2 + 1024)


def _zipf_labels(rng: np.random.Generator, clips: int, per_clip: np.ndarray, classes: int, prefix: str
                 ) -> tuple[pa.Array, pa.Array]:
    """``per_clip[i]`` labels for each clip, categories Zipf-distributed (with replacement: a head
    category can repeat within a clip, which merge_labels counts once), scores best first."""
    weights = 1.0 / np.arange(1, classes + 1) ** 1.1
    drawn = np.searchsorted(np.cumsum(weights) / weights.sum(), rng.random(int(per_clip.sum())))
    names = np.array([f"{prefix}{k}" for k in range(classes)], dtype=object)
    offsets = np.concatenate([[0], np.cumsum(per_clip)]).astype(np.int32)
    scores = np.round(np.sort(rng.random(int(per_clip.sum())))[::-1], 6)
    return (pa.ListArray.from_arrays(offsets, pa.array(names[np.minimum(drawn, classes - 1)], pa.string())),
            pa.ListArray.from_arrays(offsets, pa.array(scores, pa.float64())))


def write_synthetic(folder: str | Path, clips: int, slots: int = 4, seed: int = 0) -> dict[str, list[Path]]:
    """Slot outputs of clip, annotate_visual and annotate_audio for ``clips`` clips (module docstring).

    Returns ``{stage: [slot folders]}``. Each slot holds its videos (by :func:`dataroot.slot_of`);
    visual labels every clip (10 each), audio most (0 to 5 each; 5% of clips have no audio row).
    """
    from mmvideos.stages.annotate import LABEL_COLUMNS
    from mmvideos.stages.clip import CLIP_COLUMNS

    folder, rng = Path(folder), np.random.default_rng(seed)
    videos = [f"vid{v:08d}" for v in range(max(1, clips // CLIPS_PER_VIDEO))]
    by_slot = [[v for v in videos if dataroot.slot_of(v, slots) == s] for s in range(slots)]
    parts: dict[str, list[Path]] = {"clip": [], "annotate_visual": [], "annotate_audio": []}
    provenance = {"visual": ("efficientnet-lite0", "synthetic", "a" * 64), "audio": ("yamnet", "synthetic", "b" * 64)}
    for slot, slot_videos in enumerate(by_slot):
        clip_ids = [f"{v}-{k:03d}" for v in slot_videos for k in range(CLIPS_PER_VIDEO)]
        video_of = np.repeat(slot_videos, CLIPS_PER_VIDEO)
        n = len(clip_ids)
        table = pd.DataFrame({"clip_id": clip_ids, "video_id": video_of, "start_s": np.tile(np.arange(10) * 4.0, n // 10),
                              "end_s": np.tile(np.arange(10) * 4.0 + 4, n // 10), "fold": rng.integers(0, 5, n),
                              "split": np.where(rng.random(n) < 0.1, "val", "train"), "n_frames": 12,
                              "shard": [f"key-{v}" for v in video_of]}, columns=CLIP_COLUMNS)
        part = folder / f"clip-{slot}"
        write_parquet(table, part / "clips.parquet")
        manifest = pd.DataFrame({"stage": "clip", "key": [f"key-{v}" for v in slot_videos], "video_id": slot_videos,
                                 "file": "audio.tar", "uri": [f"root/clip/{v}/audio.tar" for v in slot_videos],
                                 "clips": CLIPS_PER_VIDEO, "seconds": 40.0, "bytes": 1 << 20, "sha256": "0" * 64},
                                columns=dataroot.MANIFEST_COLUMNS)
        write_parquet(manifest, part / dataroot.MANIFEST)
        write_json({"clips": n}, part / "summary.json")
        parts["clip"].append(part)
        for modality, classes, prefix in (("visual", VISUAL_CLASSES, "visual:"), ("audio", AUDIO_CLASSES, "audio:/m/")):
            keep = np.ones(n, bool) if modality == "visual" else rng.random(n) >= 0.05
            per_clip = np.full(keep.sum(), 10) if modality == "visual" else rng.integers(0, 6, keep.sum())
            labels, scores = _zipf_labels(rng, int(keep.sum()), per_clip, classes, prefix)
            rows = pa.table({"clip_id": pa.array(np.array(clip_ids, dtype=object)[keep], pa.string()),
                             "labels": labels, "scores": scores,
                             **{c: pa.array([v] * int(keep.sum()), pa.string())
                                for c, v in zip(LABEL_COLUMNS[3:], provenance[modality])}})
            part = folder / f"annotate_{modality}-{slot}"
            write_parquet(rows.to_pandas(), part / f"{modality}.parquet")
            write_text(pd.DataFrame({"id": [f"{prefix}{k}" for k in range(classes)],
                                     "name": [f"{modality} class {k}" for k in range(classes)]}).to_csv(index=False),
                       part / "classes.csv")
            write_json({"clips": int(keep.sum())}, part / "summary.json")
            parts[f"annotate_{modality}"].append(part)
    return parts


def write_synthetic_features(folder: str | Path, clips: int, seed: int = 0) -> Path:
    """A gathered features folder of ``clips`` clips: per-video units of the stage's format
    (:class:`mmvideos.data.shards.ShardWriter`, :func:`mmvideos.features.store.encode_mel`; one
    ``[1, FEATURE_FRAMES, 64]`` array a clip), their manifest and the index in clip order."""
    from mmvideos.data import shards
    from mmvideos.data.files import sha256_file
    from mmvideos.features.store import FEATURES, INDEX
    from mmvideos.stages.features import INDEX_COLUMNS

    folder, rng = Path(folder) / "features", np.random.default_rng(seed)
    root = dataroot.DataRoot(Path(folder).parent / "root")
    mel = np.zeros((1, FEATURE_FRAMES, MEL_BINS), np.float16)
    rows, index = [], []
    for v in range(max(1, clips // CLIPS_PER_VIDEO)):
        video, key = f"vid{v:08d}", f"{v:064x}"
        path = Path(root.unit("features", key)) / FEATURES
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:  # the stage's writer, without its durable rename: 10^5 files to write
            writer = shards.ShardWriter.to_file(fh)
            for k in range(CLIPS_PER_VIDEO):
                mel[0, 0, :2] = divmod(v * CLIPS_PER_VIDEO + k, 2048)  # clips differ (float16 holds 0..2048 exactly)
                writer.write(f"{video}-{k:03d}", encode_mel(mel))
            writer.close()
        rows.append({"stage": "features", "key": key, "video_id": video, "file": FEATURES, "uri": str(path),
                     "clips": CLIPS_PER_VIDEO, "seconds": float(CLIPS_PER_VIDEO), "bytes": path.stat().st_size,
                     "sha256": sha256_file(path), "reused": False})
        split = "val" if rng.random() < 0.1 else "train"
        index += [(f"{video}-{k:03d}", str(path), 1, split, v % 5, [int(x) for x in rng.integers(0, VISUAL_CLASSES, 5)],
                   [VISUAL_CLASSES + int(rng.integers(AUDIO_CLASSES))]) for k in range(CLIPS_PER_VIDEO)]
    write_parquet(pd.DataFrame(rows, columns=dataroot.MANIFEST_COLUMNS), folder / dataroot.MANIFEST)
    table = pa.Table.from_pandas(pd.DataFrame(index, columns=INDEX_COLUMNS), preserve_index=False)
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / INDEX, row_group_size=8192)  # as the gather writes it
    return folder


def write_synthetic_prints(folder: str | Path, videos: int, seconds: float = 120.0, seed: int = 0) -> Path:
    """Chromaprint-like fingerprints of ``videos`` videos (``ingest.fingerprint.seconds`` of audio each:
    ~8 values a second, each differing from the last in about 8 of its 32 bits, as speech and music
    do), 1% of them re-encoded copies of another (a tenth of their values with a flipped bit), in a
    :class:`mmvideos.stages.print_index.PrintStore` under ``folder/prints``."""
    from mmvideos.stages.overlap import ITEMS_PER_S
    from mmvideos.stages.print_index import PrintStore

    rng, items = np.random.default_rng(seed), int(seconds * ITEMS_PER_S)

    def prints():
        for v in range(videos):
            if v and rng.random() < 0.01:
                values = np.bitwise_xor.accumulate(_flips(np.random.default_rng([seed, int(rng.integers(v))]), items))
                values[rng.random(items) < 0.1] ^= np.uint32(1 << 7)
            else:
                values = np.bitwise_xor.accumulate(_flips(np.random.default_rng([seed, v]), items))
            yield values

    folder = Path(folder) / "prints"
    folder.mkdir(parents=True, exist_ok=True)
    PrintStore(folder, prints())
    return folder


def _flips(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random uint32 masks of about 8 set bits (each bit set with probability 1/4)."""
    return rng.integers(0, 2**32, n, dtype=np.uint32) & rng.integers(0, 2**32, n, dtype=np.uint32)


def run_step(step: str, corpus: str | Path, **options) -> None:
    """Run one reduce step on a corpus folder of :func:`write_synthetic` (what the child process
    does); ``options`` change a step's settings (``sample_clips`` of label_drift)."""
    corpus = Path(corpus)
    if step.startswith("gather_"):
        stage = {"clips": "clip", "visual": "annotate_visual", "audio": "annotate_audio"}[step.removeprefix("gather_")]
        parts = sorted(corpus.glob(f"{stage}-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
        dataroot.gather(parts, corpus / stage, stage)
    elif step == "merge_labels":
        from mmvideos.stages.annotate import MergeConfig, merge_labels

        merge_labels(corpus / "clip", corpus / "annotate_visual", corpus / "annotate_audio", corpus / "labels",
                     MergeConfig(), progress=False)
    elif step == "label_drift":  # train vs val of merge_labels' table, as the pipeline runs it
        from mmvideos.stages.drift import DriftConfig, label_drift

        label_drift(corpus / "labels", corpus / "drift", DriftConfig(**options), progress=False)
    elif step == "pack":
        from mmvideos.stages.pack import PackConfig, pack_features

        pack_features(corpus / "features", corpus / "packed", dataroot.DataRoot(corpus / "root"), PackConfig(PACK_MB))
    elif step == "pretrain_start":  # one rank's start-up and an epoch of its loader, the samples dropped
        from mmvideos.training.data import TrainStream, training_packs

        stream = TrainStream(*training_packs(corpus / "packed"), seed=0, shuffle_buffer=8192)
        stream.set_epoch(0)
        samples = sum(1 for _ in stream)
        write_json({"samples": samples, "objects": len(stream.shard_uris)}, corpus / "epoch.json")
    elif step == "near_duplicates":  # ingest's index over every video's fingerprint
        from mmvideos.stages.overlap import FingerprintConfig, find_matches
        from mmvideos.stages.print_index import PrintStore

        matches = find_matches(PrintStore(corpus / "prints"), FingerprintConfig())
        write_json({"matches": len(matches)}, corpus / "near_duplicates.json")
    else:
        raise ValueError(f"unknown reduce step {step!r}; known: {STEPS}")


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` of ``/proc/self/status`` (Linux).

    Not ``getrusage``'s ``ru_maxrss``: Linux carries that over a fork and exec, so a child started
    from a big parent would report the parent's size; the high-water mark is the process's own.
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise OSError("no VmHWM in /proc/self/status: the peak memory is measured on Linux")


def measure_step(step: str, corpus: str | Path, **options) -> dict[str, float]:
    """Run ``step`` in a child process; ``{"peak_mb": its peak RSS, "seconds": its wall time}``.

    A child of its own, so the peak is the step's alone (Python, pandas and pyarrow included),
    not the parent's or an earlier step's.
    """
    code = ("import json, sys, time; from mmvideos.bench.reduce import peak_rss_mb, run_step; "
            "t = time.perf_counter(); run_step(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3])); "
            "print(json.dumps({'seconds': time.perf_counter() - t, 'peak_mb': peak_rss_mb()}))")
    done = subprocess.run([sys.executable, "-c", code, step, str(corpus), json.dumps(options)], check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def extrapolate(clips: list[int], values: list[float], power: bool) -> float:
    """The value at the paper's 15 M clips. Memory: a line through ``(clips, values)`` (a fixed part
    plus a per-clip part). Time (``power``): the largest measurement scaled by the growth exponent
    fitted in log space, taken as at least 1 (never better than linear)."""
    x, y = np.asarray(clips, float), np.asarray(values, float)
    if power:
        k = np.polyfit(np.log(x), np.log(np.maximum(y, 1e-3)), 1)[0] if len(x) > 1 else 1.0
        return float(y[-1] * (PAPER_CLIPS / x[-1]) ** max(k, 1.0))
    return _line(x, y, PAPER_CLIPS)


def _line(x: np.ndarray, y: np.ndarray, at: float) -> float:
    slope, intercept = np.polyfit(x, y, 1) if len(x) > 1 else (y[0] / x[0], 0.0)
    return float(intercept + max(slope, 0.0) * at)


def sampled_at_15m(row: dict, cap: int) -> int:
    """label_drift's sampled rows at 15 M clips: each side (train, val) scaled from the largest
    size, at most ``cap`` (``label_drift.sample_clips``) a side."""
    scale = PAPER_CLIPS / row["clips"][-1]
    return sum(min(round(n * scale), cap) for n in row["sides"][-1])


#: What a step reads that another step writes (the rest read the synthetic corpus).
NEEDS = {"merge_labels": ("gather_clips", "gather_visual", "gather_audio"), "label_drift": ("merge_labels",),
         "pretrain_start": ("pack",)}


def with_inputs(steps: tuple[str, ...]) -> list[str]:
    """``steps`` and every step whose output they read, in :data:`STEPS` order."""
    wanted: set[str] = set()
    todo = list(steps)
    while todo:
        step = todo.pop()
        if step not in wanted:
            wanted.add(step)
            todo.extend(NEEDS.get(step, ()))
    return [step for step in STEPS if step in wanted]


def reduce_benchmark(sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000), slots: int = 4,
                     steps: tuple[str, ...] = STEPS) -> dict[str, dict]:
    """The reduce steps ``steps`` at every corpus size (module docstring; the steps whose output a
    chosen one reads run too, unrecorded: :func:`with_inputs`); the ``reduce`` part of scale.json.

    label_drift's memory follows the rows it samples (``label_drift.sample_clips`` a side, every
    clip below that), not the corpus: its peak is extrapolated on a line through the sampled rows
    to their number at 15 M clips (``sampled``, ``sampled_at_15m``)."""
    from mmvideos.stages.drift import DriftConfig

    unknown = set(steps) - set(STEPS)
    if unknown:
        raise ValueError(f"unknown reduce steps {sorted(unknown)}; known: {STEPS}")
    run = with_inputs(steps)
    figures: dict[str, dict] = {step: {"clips": [], "peak_mb": [], "seconds": []} for step in steps}
    for clips in sizes:
        with tempfile.TemporaryDirectory(prefix="mmvideos-reduce-") as corpus:
            started = time.perf_counter()
            write_synthetic(corpus, clips, slots)
            if "pack" in run:
                write_synthetic_features(corpus, clips)
            if "near_duplicates" in run:
                write_synthetic_prints(corpus, max(1, clips // CLIPS_PER_VIDEO))
            print(f"{clips:,} clips: corpus written in {time.perf_counter() - started:.1f} s", flush=True)
            for step in run:
                measured = measure_step(step, corpus)
                if step not in steps:  # an input of a chosen step, not measured for itself
                    continue
                figures[step]["clips"].append(clips)
                figures[step]["peak_mb"].append(round(measured["peak_mb"], 1))
                figures[step]["seconds"].append(round(measured["seconds"], 2))
                if step == "label_drift":
                    drift = json.loads((Path(corpus) / "drift" / "summary.json").read_text())
                    figures[step].setdefault("sides", []).append([drift["reference_clips"], drift["current_clips"]])
                    figures[step].setdefault("sampled", []).append(sum(drift["sampled_clips"].values()))
                print(f"  {step:>14}: {measured['peak_mb']:8.1f} MB peak, {measured['seconds']:8.2f} s", flush=True)
    for step, row in figures.items():
        row["peak_mb_at_15m"] = round(extrapolate(row["clips"], row["peak_mb"], power=False), 1)
        row["seconds_at_15m"] = round(extrapolate(row["clips"], row["seconds"], power=True), 1)
        if "sampled" in row:
            row["sampled_at_15m"] = sampled_at_15m(row, DriftConfig().sample_clips)
            row["peak_mb_at_15m"] = round(_line(np.asarray(row["sampled"], float), np.asarray(row["peak_mb"], float),
                                                row["sampled_at_15m"]), 1)
    return figures


def main(output: str | Path, sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000),
         steps: tuple[str, ...] = STEPS) -> dict[str, dict]:
    """Run :func:`reduce_benchmark` and save it under ``reduce`` in ``output``/scale.json (the other
    steps' figures and the rest of the file kept)."""
    target = Path(output) / "scale.json"
    saved = json.loads(target.read_text()) if target.is_file() else {}
    saved["reduce"] = {**saved.get("reduce", {}), **reduce_benchmark(sizes, steps=steps)}
    saved["reduce"] = {step: saved["reduce"][step] for step in STEPS if step in saved["reduce"]}
    write_json(saved, target)
    return saved["reduce"]
