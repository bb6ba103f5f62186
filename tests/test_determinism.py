"""pretrain.deterministic: the kernels pinned before torch loads, and a pinned run repeats bit for bit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mmvideos.stages.pretrain import PretrainConfig, pretrain_seeds
from mmvideos.training.determinism import environment, run_pinned
from mmvideos.training.synthetic import write_synthetic_features


def test_the_environment_pins_every_library_to_one_instruction_set():
    assert environment({}) == {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2",
                               "CUBLAS_WORKSPACE_CONFIG": ":4096:8"}
    assert environment({"ATEN_CPU_CAPABILITY": "default"})["MKL_CBWR"] == "COMPATIBLE"  # the caller's choice kept
    with pytest.raises(ValueError, match="ATEN_CPU_CAPABILITY='sse9'"):
        environment({"ATEN_CPU_CAPABILITY": "sse9"})


def test_a_capability_this_cpu_lacks_is_refused(tmp_path, monkeypatch):
    import torch

    # the rule, on any CPU: one whose widest kernels are AVX2 (this build machine's, where the real
    # AVX-512 pin dies with SIGILL in MKL and oneDNN)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx512")
    with pytest.raises(ValueError, match="this CPU's widest is avx2"):
        run_pinned(tmp_path / "features", tmp_path / "out", PretrainConfig(deterministic=True))


def test_a_fresh_process_loads_torch_with_the_pinned_kernels():
    env = {**os.environ, **environment({"ATEN_CPU_CAPABILITY": "default"})}
    code = "import torch; print(torch.backends.cpu.get_cpu_capability())"
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "DEFAULT"


def test_a_deterministic_pretraining_repeats_bit_for_bit(tmp_path, monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    features = write_synthetic_features(tmp_path / "features", num_clips=32, val_clips=0)
    cfg = PretrainConfig(model="vggish_fc", width_mult=0.0625, epochs=1, batch_size=16, shuffle_buffer=16,
                         num_workers=0, device="cpu", val_clips=0, deterministic=True)
    weights = []
    for run in ("a", "b"):
        summary = pretrain_seeds(features, tmp_path / run, cfg, progress=False)
        assert summary["epochs"] == 1
        weights.append(json.loads((tmp_path / run / "model.json").read_text())["sha256"])
    assert weights[0] == weights[1]
