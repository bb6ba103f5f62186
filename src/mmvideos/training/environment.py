"""Which environment made a run's results: Python, the dependency lock, torch and its kernels, the OS.

Written beside the pre-trained model (``environment.json``; the DVC run keeps it under
``results/pretrain/``), so a reviewer comparing numbers knows what produced them. The lock is
``requirements.lock`` (``make setup`` installs exactly it); ``weights_trained_on`` is the hardware
whose kernels computed the weights (the training history's, kept through a resume that trains no
epoch), which may differ from this run's ``cpu_capability``/``gpu``.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from mmvideos.closure import REPO
from mmvideos.data.files import sha256_file

if TYPE_CHECKING:
    import torch

#: The dependency lock ``make setup`` installs (in a checkout; an installed image has none).
LOCK = REPO / "requirements.lock"


def environment(weights_trained_on: str | None = None, lock: Path = LOCK) -> dict:
    """The record (module docstring); ``lock`` is ``None``-valued where there is no lock file."""
    import torch

    cuda = torch.cuda.is_available()
    return {
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()} {platform.machine()}",
        "lock": {"file": lock.name, "sha256": sha256_file(lock)} if lock.is_file() else None,
        "mmvideos": metadata.version("mmvideos"),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "weights_trained_on": weights_trained_on,
    }


def trained_on(history: list[dict], device: torch.device) -> str:
    """The hardware whose kernels computed the weights: that of the epochs in the history (a resume
    that trains no epoch keeps it), several joined by ", " when a run resumed elsewhere."""
    kinds = list(dict.fromkeys(h["hardware"] for h in history if h.get("hardware")))
    return ", ".join(kinds) if kinds else hardware(device)


def hardware(device: torch.device) -> str:
    """What computed the weights, to the level that changes their rounding: the GPU's name, or the
    CPU kernels torch chose (``AVX512``, ``AVX2``, ...). The same seed and data give the same
    weights on the same hardware; across kinds, float rounding differs and training drifts apart."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {torch.backends.cpu.get_cpu_capability()}"
