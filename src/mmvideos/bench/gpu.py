"""``make bench-gpu``: the GPU figures the paper's recipe depends on, in one run of a few minutes.

On CUDA, at the paper's batch of 1,024 with bfloat16 autocast and channels-last tensors:

* training samples/s of each of the five models, and their model FLOPs utilisation (MFU):
  ``3 x forward FLOPs per sample x samples/s / the GPU's dense bf16 peak`` (forward FLOPs as
  ``mmvideos models`` counts them: convolutions and matrix products);
* the training loader's samples/s with 1, 4 and 16 workers (batches collated and pinned), and
  VGGish-FC (Table 1) trained from that loader with 16 workers: whether the loader keeps up;
* the annotators' frames/s and audio-seconds/s.

Writes ``bench_gpu.json`` and ``bench_gpu.md`` to ``--output``. ``--device cpu --quick`` runs the
same code small on a CPU (the test suite does), so the script is known to work before a GPU
is at hand. Usage: ``python -m mmvideos.bench.gpu [--device cuda] [--quick] [--output DIR]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

#: Dense bf16 tensor-core peaks (FLOP/s) by a substring of ``torch.cuda.get_device_name()``.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "GH200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12,
             "A10G": 70e12}

PAPER_BATCH = 1024
FULL = {"batch": PAPER_BATCH, "steps": 10, "warmup": 3, "width_mult": 1.0, "clips": 32000, "shards": 64,
        "workers": (1, 4, 16), "loader_seconds": 8.0, "fed_steps": 30}
QUICK = {"batch": 8, "steps": 1, "warmup": 1, "width_mult": 0.0625, "clips": 400, "shards": 4,
         "workers": (0, 2), "loader_seconds": 1.0, "fed_steps": 2}


def peak_flops(device: torch.device, override_tflops: float | None = None) -> float | None:
    """The device's dense bf16 peak in FLOP/s: ``override_tflops``, else from :data:`PEAK_BF16`."""
    if override_tflops:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def model_figures(device: torch.device, settings: dict, peak: float | None) -> list[dict[str, Any]]:
    """Training samples/s and MFU of each model (:func:`mmvideos.bench.run.measure`)."""
    from mmvideos.bench.run import measure
    from mmvideos.models import MODEL_NAMES, build_model, count_flops

    rows = []
    for name in MODEL_NAMES:
        flops = count_flops(build_model(name, 10998, settings["width_mult"]))
        row = measure(name, device, settings["batch"], settings["steps"], settings["warmup"], 10998,
                      settings["width_mult"])
        row["forward_flops"] = flops
        row["mfu"] = 3 * flops * row["samples_per_s"] / peak if peak else None
        rows.append(row)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def _loader(stream, batch: int, workers: int, pin: bool):
    from torch.utils.data import DataLoader

    from mmvideos.training.data import collate

    return DataLoader(stream, batch_size=batch, collate_fn=collate, num_workers=workers, drop_last=True,
                      pin_memory=pin, persistent_workers=workers > 0, prefetch_factor=4 if workers else None)


def loader_figures(shards: tuple, settings: dict, pin: bool) -> list[dict[str, Any]]:
    """Samples/s the loader delivers with each worker count, over repeated epochs of the bench
    shards (:func:`mmvideos.bench.figures.bench_shards`; worker start-up and the first batch
    excluded)."""
    from mmvideos.training.data import TrainStream

    uris, counts, meta = shards
    rows = []
    for workers in settings["workers"]:
        stream = TrainStream(uris, counts, meta, seed=0, shuffle_buffer=4096)
        loader = _loader(stream, settings["batch"], workers, pin)
        samples, started = 0, None
        while started is None or time.perf_counter() - started < settings["loader_seconds"]:
            for mel, _ in loader:
                if started is None:
                    started = time.perf_counter()  # from the first batch on
                    continue
                samples += len(mel)
                if time.perf_counter() - started >= settings["loader_seconds"]:
                    break
        seconds = time.perf_counter() - started
        rows.append({"workers": workers, "samples": samples, "seconds": seconds, "samples_per_s": samples / seconds})
        del loader
    return rows


def fed_figure(shards: tuple, device: torch.device, settings: dict) -> dict[str, Any]:
    """VGGish-FC trained from the loader with the most workers: samples/s end to end."""
    from torch import nn

    from mmvideos.bench.run import train_step
    from mmvideos.models import build_model
    from mmvideos.training.data import TrainStream, multi_hot

    cuda = device.type == "cuda"
    uris, counts, meta = shards
    workers = max(settings["workers"])
    loader = _loader(TrainStream(uris, counts, meta, seed=0, shuffle_buffer=4096), settings["batch"], workers, cuda)
    model = build_model("vggish_fc", 1050, settings["width_mult"]).to(device).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=cuda)
    criterion = nn.BCEWithLogitsLoss()
    steps, started, samples = 0, None, 0
    while steps < settings["fed_steps"]:
        for mel, labels in loader:
            x = mel.to(device, non_blocking=True).float()
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            train_step(model, optimizer, criterion, x, multi_hot(labels.to(device, non_blocking=True), 1050))
            steps += 1
            if started is None:  # the first step: start-up, cuDNN autotuning
                if cuda:
                    torch.cuda.synchronize(device)
                started = time.perf_counter()
            else:
                samples += len(mel)
            if steps >= settings["fed_steps"]:
                break
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - started
    return {"model": "vggish_fc", "workers": workers, "batch": settings["batch"], "samples_per_s": samples / seconds}


def annotator_figures(device: str, quick: bool) -> dict[str, Any]:
    """Frames/s and audio-seconds/s of the annotators (:mod:`mmvideos.bench.annotators`)."""
    from mmvideos.bench.annotators import benchmark_annotators
    from mmvideos.stages.annotate import AudioConfig, VisualConfig

    n = (8, 16) if quick else (256, 1024)
    return benchmark_annotators(VisualConfig(device=device), AudioConfig(device=device), frames=n[0], seconds=n[1],
                                repeats=1 if quick else 3)


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown tables under a heading."""
    return "# mmvideos bench-gpu\n\n" + markdown_body(report) + "\n"


def markdown_body(report: dict[str, Any]) -> str:
    """The machine and the tables (also the GPU block of docs/benchmarks.md, :mod:`mmvideos.tooling.docs`)."""
    m = report["machine"]
    lines = [f"Machine: {m['gpu'] or 'no GPU'} ({m['cpu']}, {m['cores']} cores); "
             f"device {report['device']}; peak {report['peak_tflops'] or 'unknown'} dense bf16 TFLOP/s; "
             + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v) + ".", "",
             f"Training (fwd + bwd + Adam, batch {report['settings']['batch']}, width "
             f"{report['settings']['width_mult']}, bf16 autocast and channels-last on CUDA):", "",
             "| model | samples/s | forward GFLOPs/sample | MFU |", "|---|---|---|---|"]
    for row in report["models"]:
        mfu = f"{row['mfu']:.1%}" if row["mfu"] is not None else "n/a"
        lines.append(f"| {row['model']} | {row['samples_per_s']:,.0f} | {row['forward_flops'] / 1e9:.2f} | {mfu} |")
    lines += ["", "Loader (samples/s delivered, batches collated and pinned):", "", "| workers | samples/s |", "|---|---|"]
    lines += [f"| {r['workers']} | {r['samples_per_s']:,.0f} |" for r in report["loader"]]
    fed = report["fed"]
    lines += ["", f"VGGish-FC trained from the loader ({fed['workers']} workers, batch {fed['batch']}): "
              f"{fed['samples_per_s']:,.0f} samples/s (target 29,000 on an H100).", "", "Annotators:", ""]
    for modality, row in report["annotators"].items():
        lines.append(f"- {modality}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
    if "visual" in report["annotators"]:
        from mmvideos.bench.annotators import paper_frames_line

        where = f"on {m['gpu']}" if m["gpu"] else f"on this machine's {m['cores']} CPU cores"
        lines += ["", paper_frames_line(report["annotators"]["visual"]["frames_per_s"], where)]
    return "\n".join(lines)


def run(device: str = "cuda", quick: bool = False, output: str | Path = "bench-gpu",
        peak_tflops: float | None = None) -> dict[str, Any]:
    """Measure everything (module docstring); write ``bench_gpu.json`` and ``bench_gpu.md``."""
    from mmvideos.bench.figures import bench_shards
    from mmvideos.bench.run import machine
    from mmvideos.data.atomic import write_json, write_text

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run with --device cpu --quick to check the script")
    torch_device = torch.device(device)
    torch.backends.cudnn.benchmark = True
    settings = QUICK if quick else FULL
    peak = peak_flops(torch_device, peak_tflops)
    began = time.perf_counter()
    report: dict[str, Any] = {"machine": machine(device), "device": device, "settings": settings,
                              "peak_tflops": peak / 1e12 if peak else None}
    report["models"] = model_figures(torch_device, settings, peak)
    with tempfile.TemporaryDirectory() as tmp:
        shards = bench_shards(Path(tmp), settings["clips"], settings["shards"])
        report["loader"] = loader_figures(shards, settings, torch_device.type == "cuda")
        report["fed"] = fed_figure(shards, torch_device, settings)
    report["annotators"] = annotator_figures(device, quick)
    report["seconds"] = time.perf_counter() - began
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(report, out / "bench_gpu.json")
    markdown = format_markdown(report)
    write_text(markdown, out / "bench_gpu.md")
    print(markdown)
    return report


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m mmvideos.bench.gpu``."""
    parser = argparse.ArgumentParser(prog="python -m mmvideos.bench.gpu", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs")
    parser.add_argument("--output", default="bench-gpu", help="report folder (default: %(default)s)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="the GPU's dense bf16 peak, where its name is not in the built-in table")
    args = parser.parse_args(argv)
    run(args.device, args.quick, args.output, args.peak_tflops)


if __name__ == "__main__":
    main()
