"""Training throughput of the pre-training architectures (samples per second).

One measured step is what :func:`mmvideos.train.pretrain` does per batch: forward, sigmoid BCE
over the vocabulary, backward and an Adam step, on random log-mel input ``[B, 1, 100, 64]``
and random multi-hot targets. On CUDA it runs under bfloat16 autocast with channels-last
tensors, as training does, and synchronises before reading the clock. Warm-up steps (kernel
selection, allocator growth, lazy imports) are excluded.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mmvideos.models import MODEL_NAMES, build_model


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            logits = model(x)
        loss = criterion(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
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


def run_all(device: str = "cpu", models: Sequence[str] | None = None, batch: int = 8, steps: int = 3,
            width_mult: float = 1.0) -> None:
    """``mmvideos bench``: print the machine, then annotator, feature and training throughput."""
    import os

    from mmvideos.annotate import AudioConfig, VisualConfig
    from mmvideos.annotators.bench import benchmark_annotators
    from mmvideos.features.extract import feature_throughput

    name = torch.cuda.get_device_name() if device.startswith("cuda") else _cpu_name()
    print(f"machine: {name}, {os.cpu_count()} cores, torch {torch.__version__}, device {device}")
    print("annotators (model call only, best of 3):")
    benchmark_annotators(VisualConfig(device=device), AudioConfig(device=device))
    rate = feature_throughput(device=device)
    print(f"features: {rate:,.0f} audio-seconds/s per {'GPU' if device.startswith('cuda') else 'core'} (paper preset)")
    print(f"training (fwd+bwd+Adam, batch {batch}, width {width_mult}, {'bf16 autocast' if device.startswith('cuda') else 'fp32'}):")
    benchmark(models or MODEL_NAMES, device, batch, steps, width_mult=width_mult)
