"""``pretrain.deterministic``: pin what can be pinned so that a result does not depend on the machine.

The same seed and data gave demo transfer results 13 points apart on two x86-64 CPUs: torch picks
its CPU kernels by the instructions the CPU has (AVX-512, AVX2 or none), and kernels of different
widths add floating-point numbers in different orders. What this pins:

* **CPU kernels**, by environment variables read when the libraries load, so they are set before
  torch is imported in a fresh training process (:func:`run_pinned`): ATen's
  ``ATEN_CPU_CAPABILITY`` (default ``avx2``, which every x86-64 server since 2013 has; a value set by
  the caller is kept, e.g. ``default`` for no SIMD at all), oneDNN's ``ONEDNN_MAX_CPU_ISA`` and MKL's
  ``MKL_CBWR`` to the same instruction set.
* **Threads**: one intra-op thread, so that reductions are not split (and re-ordered) by the number
  of cores.
* **Algorithms**: ``torch.use_deterministic_algorithms`` (with a warning where an op has no
  deterministic version), cuDNN's deterministic kernels without autotuning, and cuBLAS's fixed
  workspace (``CUBLAS_WORKSPACE_CONFIG=:4096:8``) on CUDA.

What stays machine-dependent: a CPU without the pinned instruction set (ATen falls back to
narrower kernels), other torch, oneDNN or MKL versions, another GPU model, and multi-GPU runs
(the all-reduce order). docs/reproduce.md gives the measured cost and spread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from mmvideos.data.atomic import scratch_dir

if TYPE_CHECKING:
    import torch

    from mmvideos.training.config import PretrainConfig

log = logging.getLogger(__name__)

#: ATen's capability -> oneDNN's ISA cap and MKL's conditional-reproducibility branch.
ISAS = {"avx512": ("AVX512_CORE", "AVX512"), "avx2": ("AVX2", "AVX2"), "default": ("SSE41", "COMPATIBLE")}
#: The capability pinned when the caller set none.
DEFAULT_CAPABILITY = "avx2"


def environment(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment variables that pin the kernels (the caller's ``ATEN_CPU_CAPABILITY`` kept)."""
    base = dict(os.environ if base is None else base)
    capability = base.get("ATEN_CPU_CAPABILITY", DEFAULT_CAPABILITY).lower()
    if capability not in ISAS:
        raise ValueError(f"ATEN_CPU_CAPABILITY={capability!r}: expected one of {sorted(ISAS)}")
    onednn, mkl = ISAS[capability]
    return {"ATEN_CPU_CAPABILITY": capability, "ONEDNN_MAX_CPU_ISA": onednn, "MKL_CBWR": mkl,
            "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}


def pin(cfg: PretrainConfig, device: torch.device) -> None:
    """In the training process: with ``cfg.deterministic``, one thread and deterministic algorithms; warns
    when this process's kernels were not pinned before torch loaded (call it through :func:`run_pinned`)."""
    if not cfg.deterministic:
        return
    import torch

    wanted = environment()
    unpinned = {k: v for k, v in wanted.items() if os.environ.get(k) != v}
    if unpinned or torch.backends.cpu.get_cpu_capability().lower() != wanted["ATEN_CPU_CAPABILITY"]:
        log.warning("pretrain.deterministic: this process loaded torch with %s kernels and %s unset; run it "
                    "through mmvideos pretrain (or set them before python starts) for machine-independent results",
                    torch.backends.cpu.get_cpu_capability(), ", ".join(sorted(unpinned)) or "nothing")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def run_pinned(features_dir: str | Path, out_dir: str | Path, cfg: PretrainConfig, resume_from: str | None = None,
               force: bool = False, progress: bool = True, data_root: str | None = None, **_: Any) -> dict[str, Any]:
    """Pre-train in a fresh ``python -m mmvideos.training`` process whose environment pins the kernels
    before torch loads (:func:`environment`); returns its summary. One process: the pinned results are
    single-process ones."""
    import json

    with scratch_dir("pinned") as tmp:
        params = Path(tmp) / "params.yaml"
        params.write_text(yaml.safe_dump({"pretrain": dataclasses.asdict(dataclasses.replace(cfg, seeds=1))}))
        command = [sys.executable, "-m", "mmvideos.training", "--features", str(features_dir), "--out", str(out_dir),
                   "--params", str(params), *([] if progress else ["--no-progress"]),
                   *(["--resume-from", resume_from] if resume_from else []), *(["--force"] if force else []),
                   *(["--data-root", data_root] if data_root else [])]
        pinned = environment()
        check_supported(pinned["ATEN_CPU_CAPABILITY"])
        log.info("pretraining pinned (%s): %s", " ".join(f"{k}={v}" for k, v in pinned.items()), " ".join(command))
        subprocess.run(command, check=True, env={**os.environ, **pinned}, stdout=subprocess.DEVNULL)
    return json.loads((Path(out_dir) / "summary.json").read_text())


def check_supported(capability: str) -> None:
    """A capability wider than this CPU's is refused (MKL and oneDNN stop with SIGILL on such a pin)."""
    import torch

    order = list(ISAS)[::-1]  # default, avx2, avx512
    here = torch.backends.cpu.get_cpu_capability().lower()
    if here in order and order.index(capability) > order.index(here):
        raise ValueError(f"ATEN_CPU_CAPABILITY={capability}: this CPU's widest is {here}; pin {here} or narrower "
                         f"({', '.join(order[:order.index(here) + 1])}) for pretrain.deterministic")
