"""``mmvideos bench``: throughput figures with their references, and training throughput per model.

:func:`run_all` writes ``bench.json`` and ``bench.md`` (and a chart): each figure of
:mod:`mmvideos.bench.figures` next to its reference measured in the same run, the ratio, the
machine and the library versions; the workers and storage bandwidth that feed one GPU; the warm
demo run timed per task (:mod:`mmvideos.bench.demo`).

Training throughput of the pre-training architectures (samples per second):

One measured step is what :func:`mmvideos.stages.pretrain.pretrain` does per batch: forward, sigmoid BCE
over the vocabulary, backward and an Adam step, on random log-mel input ``[B, 1, 100, 64]``
and random multi-hot targets. On CUDA it runs under bfloat16 autocast with channels-last
tensors, as training does, and synchronises before reading the clock. Warm-up steps (kernel
selection, allocator growth, lazy imports) are excluded.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmvideos.models import MODEL_NAMES, build_model


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, criterion: nn.Module, x: torch.Tensor,
               y: torch.Tensor) -> None:
    """One optimiser step on a batch, as pretraining takes it (bf16 autocast on CUDA)."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        logits = model(x)
    loss = criterion(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def measure(name: str, device: torch.device, batch: int, steps: int, warmup: int,
            num_classes: int, width_mult: float) -> dict[str, Any]:
    """Training samples/s of one architecture (module docstring)."""
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    model = build_model(name, num_classes, width_mult).to(device).train()
    x = torch.randn(batch, 1, 100, 64, device=device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    y = (torch.rand(batch, num_classes, device=device) < 10 / num_classes).float()  # ~10 labels
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = nn.BCEWithLogitsLoss()
    for _ in range(warmup):
        train_step(model, optimizer, criterion, x, y)
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        train_step(model, optimizer, criterion, x, y)
    _synchronize(device)
    seconds = time.perf_counter() - started
    return {"model": name, "device": str(device), "batch": batch, "steps": steps,
            "parameters": sum(p.numel() for p in model.parameters()),
            "seconds": seconds, "samples_per_s": batch * steps / seconds}


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`benchmark` rows."""
    lines = [f"{'model':<12} {'device':<8} {'batch':>6} {'params (M)':>11} {'samples/s':>10} {'x slowest':>10}"]
    for row in rows:
        lines.append(f"{row['model']:<12} {row['device']:<8} {row['batch']:>6} {row['parameters'] / 1e6:>11.2f} "
                     f"{row['samples_per_s']:>10.1f} {row['ratio_to_slowest']:>10.2f}")
    return "\n".join(lines)


def benchmark(models: Sequence[str] = MODEL_NAMES, device: str = "cpu", batch: int = 32, steps: int = 5,
              warmup: int = 2, num_classes: int = 10998, width_mult: float = 1.0,
              print_table: bool = True) -> list[dict[str, Any]]:
    """Measure training throughput of each model and print a table.

    Args:
        models: architecture names (``mmvideos.models.MODEL_NAMES``).
        device: ``cpu`` or ``cuda``.
        batch: samples per step (the paper trains with 1,024; small batches suit a CPU).
        steps: measured steps per model.
        warmup: unmeasured steps before them.
        num_classes: output vocabulary (10,998 in the paper).
        width_mult: channel-width multiplier.
        print_table: print :func:`format_table` of the result.

    Returns:
        One dict per model: ``model, device, batch, steps, parameters, seconds,
        samples_per_s, ratio_to_slowest``.
    """
    if steps < 1 or batch < 1 or warmup < 0:
        raise ValueError("steps and batch must be positive and warmup non-negative")
    torch_device = torch.device(device)
    rows = [measure(name, torch_device, batch, steps, warmup, num_classes, width_mult) for name in models]
    slowest = min(row["samples_per_s"] for row in rows)
    for row in rows:
        row["ratio_to_slowest"] = row["samples_per_s"] / slowest
    if print_table:
        print(format_table(rows))
    return rows


def _cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else the architecture."""
    import platform

    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(device: str = "cpu") -> dict[str, Any]:
    """The machine and the library versions a figure was measured with."""
    import os
    import platform
    from importlib import metadata

    versions = {}
    for package in ("torch", "numpy", "onnxruntime", "av", "librosa", "mmvideos"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    gpu = torch.cuda.get_device_name() if device.startswith("cuda") else None
    return {"cpu": _cpu_name(), "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None, "versions": versions}


#: Samples/s an H100-class GPU trains the Table 1 model at (40% of bf16 peak; docs/sizing.md).
GPU_SAMPLES_PER_S = 29000


def loader_sizing(row: dict[str, Any], rate: float = GPU_SAMPLES_PER_S) -> dict[str, Any]:
    """Workers and storage bandwidth to feed ``rate`` samples/s, from the loader figure."""
    import math

    workers = math.ceil(rate / row["ours"])
    return {"samples_per_s": rate, "workers": workers, "cpu_cores": workers + 2,  # + the training process, its pinning
            "local_MB_per_s": rate * row["bytes_per_sample"] / 1e6,
            "gcs_MB_per_s": rate * row["reference_bytes_per_sample"] / 1e6}


def format_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: a heading, :func:`markdown_body` and the chart."""
    lines = ["# mmvideos bench", "", markdown_body(report)]
    if report.get("figure"):
        lines += ["", f"![ratios]({report['figure']})"]
    return "\n".join(lines) + "\n"


def markdown_body(report: dict[str, Any]) -> str:
    """The machine, a table of figures with references and ratios, the loader sizing, annotators,
    training and the warm demo run (also the generated block of docs/benchmarks.md,
    :mod:`mmvideos.tooling.docs`)."""
    m = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores{', ' + m['gpu'] if m['gpu'] else ''}; load average "
             f"{', '.join(f'{x:.1f}' for x in m['load_average'] or [])}; {versions}."]
    if report["figures"]:
        lines += ["", "Rates per core count this process's CPU time (wall-clock rates in brackets); each reference "
                  "ran in the same process.", "",
                  "| figure | ours | reference | ratio | target |", "|---|---|---|---|---|"]
    for row in report["figures"]:
        target = (f"ratio >= {row['target_ratio']:.2f}" if row.get("target_ratio")
                  else f">= {row['target_rate']:,} {row['unit']}" if row.get("target_rate") else "")
        lines.append(f"| {row['figure']} | {row['ours']:,.0f} {row['unit']} ({row['ours_wall']:,.0f}) | "
                     f"{row['reference']:,.0f} ({row['reference_wall']:,.0f}): {row['reference_name']} | "
                     f"{row['ratio']:.2f} | {target} |")
    if "loader_sizing" in report:
        z = report["loader_sizing"]
        lines += ["", f"Feeding {z['samples_per_s']:,} samples/s (one H100 on the Table 1 model) takes {z['workers']} "
                  f"loader worker{'s' * (z['workers'] != 1)} ({z['cpu_cores']} CPU cores with the training process) and "
                  f"{z['local_MB_per_s']:,.0f} MB/s from local shards (a sample reads its second and two headers) "
                  f"or {z['gcs_MB_per_s']:,.0f} MB/s from `gs://` shards (read whole)."]
    if report.get("annotators"):
        lines += ["", "Annotators (model call only, best of 3):", ""]
        for modality, row in report["annotators"].items():
            lines.append(f"- {modality}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
        if "visual" in report["annotators"]:
            from mmvideos.bench.annotators import paper_frames_line

            where = f"on {m['gpu']}" if m["gpu"] else f"on this machine's {m['cores']} CPU cores"
            lines += ["", paper_frames_line(report["annotators"]["visual"]["frames_per_s"], where)]
    if report.get("training"):
        lines += ["", "Training (fwd+bwd+Adam):", "", "```", format_table(report["training"]), "```"]
    if report.get("demo"):
        from mmvideos.bench.demo import markdown_lines

        lines += ["", *markdown_lines(report["demo"])]
    return "\n".join(lines)


def plot_ratios(rows: list[dict[str, Any]], path: Path) -> None:
    """A bar per figure: ours / reference, with the target ratio marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.5 * len(rows)))
    names = [r["figure"] for r in rows]
    ax.barh(names, [r["ratio"] for r in rows], color="tab:blue")
    for i, row in enumerate(rows):
        if row.get("target_ratio"):
            ax.plot([row["target_ratio"]] * 2, [i - 0.4, i + 0.4], color="tab:red")
    ax.axvline(1.0, color="grey", lw=0.8)
    ax.set_xlabel("ours / reference (red: target)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


#: The parts of ``mmvideos bench``, in the order they run (``--figures`` picks some).
FIGURES = ("log-mel", "loader", "decode", "frames", "visual", "annotators", "training", "demo")


def run_all(device: str = "cpu", models: Sequence[str] | None = None, batch: int = 8, steps: int = 3,
            width_mult: float = 1.0, output: str | Path = "bench", quick: bool = False,
            figures: Sequence[str] | None = None) -> dict[str, Any]:
    """``mmvideos bench``: measure each figure next to its reference; write ``bench.json``,
    ``bench.md`` and ``bench.png`` to ``output`` and print the Markdown.

    Args:
        device: ``cpu`` or ``cuda`` for the annotators and training.
        models, batch, steps, width_mult: the training throughput figure.
        output: folder of the report.
        quick: smaller inputs, no annotators and no demo run (a smoke run).
        figures: the parts to run (names in :data:`FIGURES`; default all).
    """
    import tempfile

    from mmvideos.bench import figures as bench_figures
    from mmvideos.data.atomic import write_json, write_text

    chosen = set(FIGURES if figures is None else figures)
    if chosen - set(FIGURES):
        raise ValueError(f"unknown figures {sorted(chosen - set(FIGURES))}; choose from {', '.join(FIGURES)}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": machine(device), "device": device, "figures": []}
    if "log-mel" in chosen:
        report["figures"] += bench_figures.log_mel_figures(repeats=3 if quick else 7)
    with tempfile.TemporaryDirectory() as tmp:
        if "loader" in chosen:
            loader = bench_figures.loader_figure(Path(tmp), clips=800 if quick else 4000)
            report["figures"].append(loader)
            report["loader_sizing"] = loader_sizing(loader)
        if "decode" in chosen:
            report["figures"] += bench_figures.decode_figures(Path(tmp), seconds=60 if quick else 600, demo=not quick)
        if "frames" in chosen:
            report["figures"].append(bench_figures.frames_figure(Path(tmp), count=12 if quick else 48,
                                                                 repeats=1 if quick else 3))
    if "visual" in chosen:
        report["figures"].append(bench_figures.visual_annotator_figure(frames=8 if quick else 32,
                                                                       repeats=1 if quick else 5))
    if "annotators" in chosen and not quick:
        from mmvideos.bench.annotators import benchmark_annotators
        from mmvideos.stages.annotate import AudioConfig, VisualConfig

        report["annotators"] = benchmark_annotators(VisualConfig(device=device), AudioConfig(device=device))
    if "training" in chosen:
        report["training"] = benchmark(models or MODEL_NAMES, device, batch, 1 if quick else steps,
                                       warmup=1 if quick else 2, width_mult=width_mult, print_table=False)
    if "demo" in chosen and not quick:
        from mmvideos.bench.demo import demo_run

        report["demo"] = demo_run()
    if report["figures"]:
        plot_ratios(report["figures"], out / "bench.png")
        report["figure"] = "bench.png"
    write_json(report, out / "bench.json")
    markdown = format_markdown(report)
    write_text(markdown, out / "bench.md")
    print(markdown)
    return report
