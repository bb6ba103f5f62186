"""Distributed data parallel: ``torchrun -m mmvideos.training`` with 2 CPU processes (gloo).

Two processes with 8 clips each per step must end where one process with the same 16-clip
global batch ends. That holds when the global batches are the same clips and the per-sample
loss does not depend on the rest of the batch:

* same clips: with one shard, rank ``r`` keeps records ``r, r + 2, ...`` of the stream and a
  shuffle buffer of 1 keeps stream order, so step ``k`` of the two ranks together sees exactly
  records ``16 k .. 16 k + 15``, the single process's batch ``k``; the per-clip draws (second,
  labels) depend on seed, epoch and clip id only, not on the reader;
* per-sample loss: DDP averages the ranks' gradients of their 8-sample mean losses, which is
  the gradient of the 16-sample mean. BatchNorm would break this (each rank normalises with
  its own 8-sample statistics, and SyncBatchNorm runs on GPUs only), so the test trains the
  original VGGish, which has no BatchNorm.

The remaining difference is float summation order, hence a tolerance rather than equality;
the ranks themselves must agree exactly (``ranks_in_sync`` compares parameter digests).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from mmvideos.config import from_dict
from mmvideos.models import build_model
from mmvideos.stages.pretrain import PretrainConfig, launch, pretrain
from mmvideos.training.synthetic import write_synthetic_features

SETTINGS = {"model": "vggish", "width_mult": 0.0625, "epochs": 2, "batch_size": 16, "lr": 1e-3,
            "shuffle_buffer": 1, "num_workers": 0, "device": "cpu", "val_clips": 0}


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return write_synthetic_features(tmp_path_factory.mktemp("features"), num_clips=48, val_clips=16)


def test_two_gloo_ranks_stay_in_sync_and_match_one_process_on_the_same_global_batch(features, tmp_path):
    # launch() is what the pretrain task and `mmvideos pretrain` run: torchrun with one process per GPU.
    distributed = launch(features, tmp_path / "ddp", from_dict(PretrainConfig, SETTINGS), nproc=2, progress=False)
    assert distributed["world_size"] == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = pretrain(features, tmp_path / "single", from_dict(PretrainConfig, SETTINGS), progress=False)
    finally:
        torch.set_num_threads(threads)

    assert single["world_size"] == 1
    assert distributed["global_step"] == single["global_step"] == 2 * (32 // 16)
    history = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert all(h["ranks_in_sync"] for h in history)
    assert [h["samples"] for h in history] == [32, 32]
    assert distributed["final"]["loss"] == pytest.approx(single["final"]["loss"], rel=1e-5)
    assert distributed["final"]["val_map"] == pytest.approx(single["final"]["val_map"], abs=1e-5)
    ddp_weights, single_weights = load_file(tmp_path / "ddp" / "model.safetensors"), load_file(
        tmp_path / "single" / "model.safetensors")
    for name, tensor in single_weights.items():
        torch.testing.assert_close(ddp_weights[name], tensor, rtol=0, atol=1e-5, msg=name)
    # The weights moved: the agreement is not that of two untouched initialisations.
    torch.manual_seed(SETTINGS.get("seed", 0))
    initial = build_model("vggish", 12, 0.0625).state_dict()
    assert not torch.allclose(initial["classifier.weight"], single_weights["classifier.weight"], atol=1e-4)
