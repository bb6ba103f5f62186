"""The scale benchmark (``mmvideos bench --scale``): does per-video cost stay flat as the corpus grows?

It generates a corpus of short videos with sound (test patterns with tones, :mod:`mmvideos.demo.synth_media`),
runs the map stages (probe, clip, annotate visual and audio, features) on it at 1x, 4x and 16x
its size, each on a fresh data root, and prints each stage's seconds per video of input: flat
columns mean the work scales with the input. It then adds 5% new videos to the largest corpus
and runs again on the same root, printing what was reused and what was computed. With
``output`` it saves what it measured as ``scale.json``, from which ``mmvideos docs`` writes the
sizing plan for the paper's 15 M clips (docs/sizing.md, :func:`sizing_plan`: the measured per-hour
costs and the bytes each stage stored); ``write`` writes that page directly.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from mmvideos.data import dataroot
from mmvideos.data.dataroot import DataRoot
from mmvideos.demo.synth_media import write_corpus
from mmvideos.stages.annotate import (
    AudioConfig,
    MergeConfig,
    VisualConfig,
    annotate_audio,
    annotate_visual,
    merge_labels,
)
from mmvideos.stages.clip import ClipConfig, clip_videos
from mmvideos.stages.features import FeatureConfig, extract_features
from mmvideos.stages.ingest import IngestConfig, gather_probes, list_source, probe_listing, read_videos

#: The map stages, in order, as the summary names them.
STAGES = ("probe", "clip", "annotate_visual", "annotate_audio", "features")
#: The paper's corpus: 15 M clips, 16,320 hours of video.
PAPER_HOURS = 16_320
PAPER_CLIPS = 15_000_000


def run_stages(source: Path, root: DataRoot, out: Path) -> dict[str, dict]:
    """Every map stage once over ``source`` on ``root`` (one slot); ``{stage: summary + wall seconds}``."""
    results: dict[str, dict] = {}

    def timed(stage: str, call) -> dict:
        started = time.perf_counter()
        summary = call()
        results[stage] = {**summary, "wall_s": time.perf_counter() - started}
        return summary

    def ingest_all() -> dict:
        fingerprint = list_source(str(source), root)
        probe_listing(root, fingerprint, out / "probe", progress=False)
        return gather_probes([out / "probe"], out / "ingest", IngestConfig(), root)

    timed("probe", ingest_all)
    videos = read_videos(out / "ingest")
    timed("clip", lambda: clip_videos(videos, out / "clip", ClipConfig(), root, progress=False))
    timed("annotate_visual", lambda: annotate_visual(out / "clip", out / "visual", VisualConfig(), root,
                                                     progress=False))
    timed("annotate_audio", lambda: annotate_audio(out / "clip", out / "audio", AudioConfig(), root, progress=False))
    merge_labels(out / "clip", out / "visual", out / "audio", out / "labels", MergeConfig(), progress=False)
    timed("features", lambda: extract_features(out / "clip", out / "labels", out / "features", root, FeatureConfig(),
                                               progress=False))
    for stage, folder in (("clip", "clip"), ("annotate_visual", "visual"), ("annotate_audio", "audio"),
                          ("features", "features")):
        manifest = dataroot.read_manifest(out / folder)
        results[stage]["stored_bytes"] = int(manifest["bytes"].sum())
        if stage == "clip":
            for name in ("audio.tar", "frames.tar"):
                results[stage][name] = int(manifest.loc[manifest["file"] == name, "bytes"].sum())
    results["clip"]["hours"] = float(videos["duration_s"].sum()) / 3600
    results["clip"]["video_bytes"] = int(videos["size_bytes"].sum())
    return results


class _Lines(list):
    """The report's lines, each also printed as it is added (the benchmark takes minutes)."""

    def append(self, line: str) -> None:
        print(line, flush=True)
        super().append(line)

    def __iadd__(self, lines):
        for line in lines:
            self.append(line)
        return self


def scale_benchmark(base_videos: int = 4, scales: tuple[int, ...] = (1, 4, 16), seconds: float = 10.0,
                    new_share: float = 0.05, write: str | Path | None = None,
                    output: str | Path | None = None) -> str:
    """Run the benchmark (module docstring), printing as it goes; returns the report."""
    threads = torch.get_num_threads()
    lines = _Lines()
    lines += [f"scale benchmark: videos of {seconds:g} s, one task slot, {threads} torch thread(s); "
              "each stage's figure includes loading its model",
              "seconds per video of input (flat = scales with the input):",
              f"{'scale':>6} {'videos':>7} " + " ".join(f"{s:>16}" for s in STAGES)]
    measured = {}
    with tempfile.TemporaryDirectory(prefix="mmvideos-scale-") as tmp:
        tmp = Path(tmp)
        for scale in scales:
            count = base_videos * scale
            source = tmp / f"videos-{scale}"
            write_corpus(source, count, duration=seconds)
            results = run_stages(source, DataRoot(tmp / f"root-{scale}"), tmp / f"out-{scale}")
            measured[scale] = results
            lines.append(f"{scale:>5}x {count:>7} " + " ".join(f"{results[s]['wall_s'] / count:>16.3f}" for s in STAGES))
        largest = max(scales)
        count = base_videos * largest
        added = max(1, round(new_share * count))
        source = tmp / f"videos-{largest}"
        write_corpus(source, added, start=count, duration=seconds)
        rerun = run_stages(source, DataRoot(tmp / f"root-{largest}"), tmp / "rerun")
        lines += ["", f"rerun at {largest}x with {added} new videos ({added / count:.0%}) on the same data root:",
                  f"{'stage':>16} {'reused':>7} {'computed':>9} {'clips computed':>15} {'seconds':>8} {'of a full run':>14}"]
        for stage in STAGES:
            r, full = rerun[stage], measured[largest][stage]
            lines.append(f"{stage:>16} {r.get('shards_reused', 0):>7} {r.get('shards_computed', 0):>9} "
                         f"{r.get('clips_computed', 0):>15} {r['wall_s']:>8.2f} {r['wall_s'] / full['wall_s']:>14.2f}")
    report = "\n".join(lines)
    if output is not None:  # numbers as JSON numbers (a NumPy scalar as its Python value), for sizing_plan
        from mmvideos.data.atomic import write_json

        target = Path(output) / "scale.json"
        kept = json.loads(target.read_text()) if target.is_file() else {}  # the reduce side's part stays
        saved = {**kept, "results": measured[max(scales)], "report": report}
        Path(output).mkdir(parents=True, exist_ok=True)
        write_json(json.loads(json.dumps(saved, default=lambda o: o.item())), Path(output) / "scale.json")
    if write is not None:
        Path(write).write_text(sizing_plan(measured[max(scales)], report))
    return report


def sizing_plan(results: dict[str, dict], report: str, reduce: dict[str, dict] | None = None) -> str:
    """docs/sizing.md: the measured per-hour costs projected to the paper's 16,320 hours, and the
    reduce steps' peak memory and time (``mmvideos bench --scale --reduce``) projected to 15 M clips."""
    hours = results["clip"]["hours"]
    scale = PAPER_HOURS / hours
    rows = []
    reads = {"probe": results["clip"]["video_bytes"], "clip": results["clip"]["video_bytes"],
             "annotate_visual": 0, "annotate_audio": 0, "features": 0}
    stored = {s: results[s].get("stored_bytes", 0) for s in STAGES}
    reads["annotate_visual"] = results["clip"]["frames.tar"]
    reads["annotate_audio"] = reads["features"] = results["clip"]["audio.tar"]
    for stage in STAGES:
        cpu_h = results[stage]["wall_s"] * scale / 3600
        slots = max(1, round(cpu_h / 12))  # a slot of one core finishing in about 12 hours
        rows.append({"stage": stage, "slot-hours": f"{cpu_h:,.0f}",
                     "task slots for ~12 h": slots,
                     "stored (TB)": f"{stored[stage] * scale / 1e12:.2f}",
                     "read (TB)": f"{reads[stage] * scale / 1e12:.2f}"})
    table = pd.DataFrame(rows)
    header = " | ".join(table.columns)
    body = "\n".join(" | ".join(str(v) for v in row) for row in table.itertuples(index=False))
    return f"""# Sizing plan for the paper's corpus

Generated by `make bench` (`mmvideos bench --scale` saves `bench/scale.json`, from which
`mmvideos docs` writes this page; do not edit by hand): the map stages
were timed on this machine over a generated corpus ({hours * 60:.1f} minutes of 10-s test-pattern
videos with tones; one task slot, torch held to one thread, onnxruntime, which runs both
annotators on the CPU, at its default), and the figures are scaled linearly to the paper's
{PAPER_HOURS:,} hours ({PAPER_CLIPS:,} clips), which the flat seconds-per-video columns below
justify. CPU-hours are a slot's hours; a stage's wall time is its CPU-hours divided by its task
slots (`data.slots`). Stored is what the stage writes to the data root; read is what it streams
from the data root or the source. Artifacts move only manifests and tables (kilobytes per
task). Not measured here (no GPU on this machine): visual annotation, features and pretraining
on GPUs; the CPU figures are an upper bound for them. Real video (720p and up) decodes more
slowly than these small test patterns: scale the clip row by the ratio you measure on your own
footage (`mmvideos clip` prints its seconds).

{header}
{"|".join("---" for _ in table.columns)}
{body}

Pretraining reads the feature shards once per epoch: 30 epochs read
{stored["features"] * scale * 30 / 1e12:.1f} TB in all.

{_gpu_estimate()}
{_reduce_table(reduce) if reduce else ""}
## The run these figures come from

```
{report}
```
"""


def _sampled(reduce: dict[str, dict]) -> str:
    """label_drift's sampled rows per size and at 15 M clips, where the report has them."""
    row = reduce.get("label_drift", {})
    if "sampled" not in row:
        return ""
    return (" (" + ", ".join(f"{n:,}" for n in row["sampled"]) + " rows at the sizes measured, "
            f"{row['sampled_at_15m']:,} at 15 M clips)")


def _reduce_table(reduce: dict[str, dict]) -> str:
    """The reduce side's section: per step, peak MB and seconds per corpus size and at 15 M clips."""
    sizes = reduce[next(iter(reduce))]["clips"]
    head = ("step | " + " | ".join(f"{n:,} clips: peak MB, s" for n in sizes) + " | at 15 M clips: peak MB, hours\n"
            + "|".join("---" for _ in range(len(sizes) + 2)))
    rows = [f"{step} | " + " | ".join(f"{mb:,.0f}, {s:,.1f}" for mb, s in zip(row["peak_mb"], row["seconds"]))
            + f" | {row['peak_mb_at_15m']:,.0f}, {row['seconds_at_15m'] / 3600:,.2f}" for step, row in reduce.items()]
    return f"""
## The reduce side: whole-corpus steps

Measured by `mmvideos bench --scale --reduce` (`bench/scale.json`'s `reduce`): each step run in a
child process of its own on synthetic slot outputs written with the stages' own writers (10 clips
a video, four task slots, the paper's 11,693 categories drawn Zipf-distributed: 10 visual and 0-5
audio labels a clip), its peak resident memory (the process's high-water mark, Python and its
libraries included) and wall seconds on this machine (a shared 2-core one: times are upper
bounds). At 15 M clips: memory on a line fitted through the sizes (a fixed part plus a per-clip
part; the streamed steps hold a few row groups per input, yet their peak still creeps up by tens
of MB a decade of clips, and the line carries that creep on as if it never levelled off: an upper
bound), time scaled from the largest size by the fitted growth exponent, taken as at least linear.
`label_drift` is train vs val of merge_labels' table (label shares counted over every clip,
evidently on a hash sample of at most `label_drift.sample_clips` a side): its memory follows the
rows it samples, every clip of a side up to that cap, so its 15 M figure is on a line through the
sampled rows{_sampled(reduce)}; `pack` packs the
features' per-video units into training packs (synthetic units of 10 frames a clip, the pack
target scaled to match: the packs per clip of real features) and `pretrain_start` is one rank's
start-up and an epoch of its loader over them, one object opened per pack; `near_duplicates` is
ingest's fingerprint index over a video's two minutes of Chromaprint-like prints for each tenth
of the clips (a video's ten clips), 1% of them copies. Not measured here: the features slots'
label reads (streamed: each scans for its own videos' rows).

{head}
{chr(10).join(rows)}
"""


#: Assumptions of the GPU estimate (not a measurement: no GPU on the machines so far).
H100_BF16_DENSE_FLOPS = 989e12
UTILISATION = 0.4
TRAIN_CLIPS, EPOCHS = 14_000_000, 30


def _gpu_estimate() -> str:
    """Pretraining GPU-hours of each model, from its counted FLOPs (an estimate, said so)."""
    from mmvideos.models import model_table

    table = model_table()
    samples = TRAIN_CLIPS * EPOCHS
    lines = [f"Pretraining GPU-hours, estimated (not measured: no GPU was available) from each model's counted "
             f"FLOPs per 1-s sample (`mmvideos models`), 3x for forward and backward, {samples / 1e6:,.0f} M samples "
             f"({TRAIN_CLIPS / 1e6:.0f} M training clips x {EPOCHS} epochs), on H100-class GPUs at "
             f"{UTILISATION:.0%} of {H100_BF16_DENSE_FLOPS / 1e12:,.0f} dense bf16 TFLOP/s:", "",
             "model | GFLOPs per sample (forward) | samples/s per GPU | GPU-hours", "---|---|---|---"]
    for row in table.itertuples(index=False):
        rate = H100_BF16_DENSE_FLOPS * UTILISATION / (3 * row.flops)
        lines.append(f"{row.model} | {row.gflops:.2f} | {rate:,.0f} | {samples / rate / 3600:,.1f}")
    return "\n".join(lines)


def main(write: str | None = None, output: str | None = None) -> None:
    """Run the benchmark on one core, as one task slot would (and save it, or write the sizing plan)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        scale_benchmark(write=write, output=output)
    finally:
        torch.set_num_threads(threads)
