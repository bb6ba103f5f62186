"""Pre-training: the sampling rules, learning a synthetic task, exact resume, the model export.

The data is :mod:`mmvideos.training.synthetic`: 12 labels (8 visual, 4 audio), each a modulated
mel band; a clip has 2 visual and 1 audio label, so every label is in ~1/4 of the clips and a
random scorer gets mAP ~0.25 and Top-1 0.25 (chance). Models are 1/16-width so the whole file
runs in well under a minute on two cores.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from sklearn.metrics import average_precision_score
from torch.utils.data import DataLoader

from mmvideos.bench.run import benchmark, format_table
from mmvideos.data.dataroot import DataRoot, collect_garbage
from mmvideos.data.files import sha256_file
from mmvideos.features.store import iter_features
from mmvideos.models import build_model
from mmvideos.stages.pretrain import PretrainConfig, checkpoint_uri, evaluate, load_model, pretrain
from mmvideos.training.data import (
    TrainStream,
    clip_keys,
    collate,
    draw_labels,
    draw_seconds,
    multi_hot,
    training_sample,
    training_shards,
)
from mmvideos.training.checkpoint import CorruptCheckpoint, load_checkpoint, save_checkpoint
from mmvideos.training.evaluation import average_precision
from mmvideos.training.loop import _publish
from mmvideos.training.synthetic import write_synthetic_features

REPO = Path(__file__).resolve().parents[1]
CHANCE_MAP = 0.25
EPOCHS = 4


def small_config(**changes) -> PretrainConfig:
    """A tiny, fast configuration of the paper's VGGish-FC on the CPU."""
    settings = dict(model="vggish_fc", width_mult=0.0625, epochs=EPOCHS, batch_size=16, lr=3e-3,
                    shuffle_buffer=32, num_workers=0, device="cpu", val_clips=0)
    return PretrainConfig(**(settings | changes))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return write_synthetic_features(tmp_path_factory.mktemp("features"), num_clips=160, val_clips=32)


@pytest.fixture(scope="module")
def trained(features, tmp_path_factory):
    out = tmp_path_factory.mktemp("pretrain")
    summary = pretrain(features, out, small_config(), progress=False)
    return out, summary


def test_training_labels_keep_half_the_visual_labels_rounded_up_and_every_audio_label():
    audio = np.array([20, 21])
    cases = [(np.arange(10), 5), (np.arange(3), 2), (np.array([7]), 1), (np.array([], dtype=np.int64), 0)]
    keys = clip_keys(0, 0, [f"clip{i}" for i in range(len(cases))])
    drawn = draw_labels(keys, [visual for visual, _ in cases], [audio] * len(cases))
    for (visual, kept), labels in zip(cases, drawn):
        assert set(audio) <= set(labels) and labels.dtype == np.int64
        assert len(set(labels) & set(visual)) == kept
        assert len(labels) == kept + len(audio)


def test_counter_based_draws_are_uniform_and_depend_only_on_seed_epoch_and_clip():
    ids = [f"clip{i}" for i in range(20000)]
    keys = clip_keys(5, 2, ids)
    assert np.array_equal(keys, clip_keys(5, 2, ids)) and np.array_equal(keys[7:9], clip_keys(5, 2, ids[7:9]))
    assert not np.array_equal(keys, clip_keys(5, 3, ids)) and not np.array_equal(keys, clip_keys(6, 2, ids))
    counts = np.bincount(draw_seconds(keys, np.full(len(ids), 5)), minlength=5)
    assert counts.min() > 0.9 * len(ids) / 5  # each of 5 seconds ~4,000 times
    # Each of 10 visual labels is kept about half the time, and each 5-subset is possible.
    drawn = draw_labels(keys, [np.arange(10)] * len(ids), [np.zeros(0, np.int64)] * len(ids))
    kept = np.bincount(np.concatenate(drawn), minlength=10)
    assert np.all(np.abs(kept / len(ids) - 0.5) < 0.03)
    assert len({tuple(sorted(d)) for d in drawn}) == 252


def test_each_clip_gets_one_second_and_draws_that_depend_only_on_seed_epoch_and_clip(features):
    clip = next(iter_features(features, split="train"))
    mel, labels = training_sample(clip, seed=0, epoch=3)
    assert mel.shape == (1, 100, 64) and mel.dtype == np.float16
    assert any(np.array_equal(mel[0], second) for second in clip.mel)
    again_mel, again_labels = training_sample(clip, seed=0, epoch=3)
    assert np.array_equal(mel, again_mel) and np.array_equal(labels, again_labels)


@pytest.mark.parametrize("num_shards", [1, 3])
def test_ranks_read_disjoint_clips_that_cover_the_training_split(tmp_path, num_shards):
    folder = write_synthetic_features(tmp_path, num_clips=30, val_clips=6, num_shards=num_shards)
    shards = training_shards(folder)
    per_rank = []
    for rank in range(2):
        stream = TrainStream(*shards, seed=1, shuffle_buffer=4, rank=rank, world_size=2)
        stream.set_epoch(2)
        per_rank.append({mel.tobytes(): labels.tolist() for mel, labels in stream})
    # Every training clip once, with the very second and labels training_sample draws for it.
    expected = {mel.tobytes(): labels.tolist()
                for mel, labels in (training_sample(clip, 1, 2) for clip in iter_features(folder, split="train"))}
    assert not per_rank[0].keys() & per_rank[1].keys()
    assert per_rank[0] | per_rank[1] == expected
    assert len(expected) == 24
    # Data-loader workers of one rank split its share the same way.
    stream = TrainStream(*shards, seed=1, shuffle_buffer=4)
    stream.set_epoch(2)
    seen = [mel.numpy().tobytes() for mel, _ in DataLoader(stream, batch_size=None, num_workers=2)]
    assert len(seen) == len(set(seen)) and set(seen) == expected.keys()


@pytest.mark.parametrize(("num_shards", "workers"), [(1, 2), (5, 0), (5, 2)])
def test_steps_are_known_before_the_epoch_and_match_what_the_loader_yields(tmp_path, num_shards, workers):
    folder = write_synthetic_features(tmp_path, num_clips=43, val_clips=6, num_shards=num_shards)
    stream = TrainStream(*training_shards(folder), seed=3, shuffle_buffer=4)
    for epoch in range(2):
        stream.set_epoch(epoch)
        batches = list(DataLoader(stream, batch_size=4, collate_fn=collate, num_workers=workers, drop_last=True))
        assert len(batches) == stream.steps(4, workers) > 0


def test_shards_are_dealt_to_readers_by_their_training_clips():
    stream = TrainStream([f"s{i}" for i in range(6)], [9, 1, 5, 5, 4, 8], {}, seed=0, shuffle_buffer=1)
    for epoch in range(3):
        stream.set_epoch(epoch)
        dealt = stream.deal(3)
        assert sorted(i for shards in dealt for i in shards) == list(range(6))
        assert sorted(stream.slot_sizes(3)) == [10, 10, 12]  # largest first, each to the lightest slot
    assert stream.deal(7) is None and stream.slot_sizes(7) == [5, 5, 5, 5, 4, 4, 4]  # every 7th clip each


def test_a_few_large_shards_are_strided_rather_than_dealt_unevenly():
    stream = TrainStream(["big", "a", "b", "c"], [110, 5, 5, 2], {}, seed=0, shuffle_buffer=1, world_size=2)
    assert stream.deal(2) is None and stream.slot_sizes(2) == [61, 61]
    assert stream.steps(16, 0) == 3  # both ranks: 61 clips -> 3 full batches of 16


def test_sparse_labels_expand_to_the_multi_hot_targets():
    mel = np.zeros((1, 100, 64), dtype=np.float16)
    _, labels = collate([(mel, np.array([0, 3])), (mel, np.array([], dtype=np.int64)), (mel, np.array([4]))])
    assert multi_hot(labels, 5).tolist() == [[1, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 1]]


def test_data_loader_workers_never_leave_a_small_source_without_steps(tmp_path):
    folder = write_synthetic_features(tmp_path / "features", num_clips=40, val_clips=8)
    summary = pretrain(folder, tmp_path / "out", small_config(epochs=1, batch_size=1024, num_workers=4), progress=False)
    assert summary["batch_size"] == 32 and summary["num_workers"] == 1 and summary["global_step"] == 1
    assert summary["final"]["samples"] == 32


def test_pretraining_learns_the_synthetic_task_well_above_chance(trained):
    out, summary = trained
    history = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == list(range(1, EPOCHS + 1))
    assert history[-1]["loss"] < history[0]["loss"]
    assert history[-1]["val_clips"] == 32
    assert history[-1]["val_map"] > CHANCE_MAP + 0.4
    assert history[-1]["val_top1"] > 0.75
    assert history[-1]["val_loss"] < history[0]["val_loss"]  # the validation loss falls with the training loss
    # The learning rate decays x0.9 after every epoch.
    assert [h["lr"] for h in history] == pytest.approx([3e-3 * 0.9**e for e in range(EPOCHS)])
    assert summary["global_step"] == EPOCHS * (128 // 16)
    assert json.loads((out / "summary.json").read_text())["best_val_map"] == pytest.approx(
        max(h["val_map"] for h in history))
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "data:image/png;base64," in (out / "curves.html").read_text()
    assert "<th>val_loss</th>" in (out / "curves.html").read_text()


def test_resuming_from_a_checkpoint_gives_exactly_the_uninterrupted_run(features, trained, tmp_path):
    uninterrupted, _ = trained
    pretrain(features, tmp_path, small_config(epochs=EPOCHS // 2), progress=False)
    pretrain(features, tmp_path, small_config(), progress=False)  # resumes at epoch EPOCHS // 2
    expected, resumed = load_file(uninterrupted / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    before = json.loads((uninterrupted / "metrics.json").read_text())
    after = json.loads((tmp_path / "metrics.json").read_text())
    for key in ("loss", "val_map", "val_top1", "lr", "step"):
        assert [h[key] for h in before] == [h[key] for h in after]


def test_a_task_on_a_fresh_pod_resumes_from_the_data_root(features, trained, tmp_path):
    """A preempted task's retry gets an empty output folder: the checkpoint kept in the data root
    carries it on from its last epoch, to the uninterrupted run's weights."""
    uninterrupted, _ = trained
    root = DataRoot(tmp_path / "root")
    other = checkpoint_uri(root, features, small_config(lr=1e-3))
    location = checkpoint_uri(root, features, small_config())
    assert location == checkpoint_uri(root, features, small_config(epochs=EPOCHS // 2)) != other  # more epochs: same state
    pretrain(features, tmp_path / "first-pod", small_config(epochs=EPOCHS // 2), progress=False, resume_from=location)
    summary = pretrain(features, tmp_path / "second-pod", small_config(), progress=False, resume_from=location)
    history = json.loads((tmp_path / "second-pod" / "metrics.json").read_text())
    assert len(history) == EPOCHS and summary["global_step"] == json.loads((uninterrupted / "summary.json").read_text())["global_step"]
    expected, resumed = load_file(uninterrupted / "model.safetensors"), load_file(tmp_path / "second-pod" / "model.safetensors")
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)
    assert not (tmp_path / "second-pod" / "checkpoint.pt").exists()  # kept in the data root only
    # a third pod finds the run finished: no epoch to train, the same model and history written out
    pretrain(features, tmp_path / "third-pod", small_config(), progress=False, resume_from=location)
    third = load_file(tmp_path / "third-pod" / "model.safetensors")
    assert third.keys() == resumed.keys() and all(torch.equal(third[name], resumed[name]) for name in resumed)
    assert json.loads((tmp_path / "third-pod" / "metrics.json").read_text()) == history
    kept = collect_garbage(root.uri, keep_runs=1, min_age_s=0)
    assert location not in kept.files  # recorded as the pretrain manifest: gc keeps it


def test_a_corrupt_checkpoint_in_the_data_root_is_named_where_it_lives(features, tmp_path):
    """Issue 22, finding 8: the error named the pod's local copy, and deleting that as advised gave
    the same error again. It names the data root's object; deleting that one starts over."""
    location = checkpoint_uri(DataRoot(tmp_path / "root"), features, small_config())
    pretrain(features, tmp_path / "first-pod", small_config(epochs=1), progress=False, resume_from=location)
    data = bytearray(Path(location).read_bytes())
    data[len(data) // 2] ^= 0x01
    Path(location).write_bytes(bytes(data))
    with pytest.raises(CorruptCheckpoint, match=rf"{location} is corrupt.*delete {location} to train"):
        pretrain(features, tmp_path / "second-pod", small_config(epochs=1), progress=False, resume_from=location)
    assert not (tmp_path / "second-pod" / "checkpoint.pt").exists()  # no bad copy left to trip over
    Path(location).unlink()
    summary = pretrain(features, tmp_path / "second-pod", small_config(epochs=1), progress=False, resume_from=location)
    assert summary["epochs_trained"] == 1 and load_checkpoint(location)["epoch"] == 1


def test_two_publishers_of_one_checkpoint_leave_one_whole_checkpoint(tmp_path):
    """Issue 22, finding 9: two publishers could leave the checkpoint and its ``.sha256`` from
    different writers. A checkpoint is one object ending with its own digest: whichever publisher
    writes last, what is there loads, whole, as one writer's."""
    sources = [save_checkpoint(tmp_path / f"writer-{n}.pt", epoch=n, weights=torch.full((4096,), float(n)))
               for n in range(2)]
    target = str(tmp_path / "root" / "pretrain" / "checkpoint.pt")
    seen = []

    def publish(source):
        for _ in range(25):
            _publish(source, target)
            seen.append(load_checkpoint(target)["epoch"])

    threads = [threading.Thread(target=publish, args=(source,)) for source in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 50 and set(seen) <= {0, 1}
    assert not Path(f"{target}.sha256").exists()
    state = load_checkpoint(target)
    assert torch.equal(state["weights"], torch.full((4096,), float(state["epoch"])))


def test_resuming_a_finished_run_on_other_kernels_rewrites_nothing_and_keeps_its_hardware(features, trained, tmp_path):
    """A resume that trains no epoch, in a fresh process whose CPU kernels differ
    (``ATEN_CPU_CAPABILITY=default``), writes the same bytes and names the kernels that trained."""
    out, summary = trained
    again = shutil.copytree(out, tmp_path / "again")
    child = ("import dataclasses, json, sys; from mmvideos.training.config import PretrainConfig; "
             "from mmvideos.training.loop import pretrain; "
             "print(json.dumps(pretrain(sys.argv[1], sys.argv[2], PretrainConfig(**json.loads(sys.argv[3])), progress=False)))")
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    proc = subprocess.run([sys.executable, "-c", child, str(features), str(again),
                           json.dumps(dataclasses.asdict(small_config()))], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = json.loads(proc.stdout.strip().splitlines()[-1])
    assert resumed["epochs_trained"] == 0 and summary["epochs_trained"] == EPOCHS
    assert resumed["hardware"] == summary["hardware"] == f"cpu {torch.backends.cpu.get_cpu_capability()}"
    for name in ("model.safetensors", "model.json", "metrics.json", "summary.json", "curves.html"):
        assert (again / name).read_bytes() == (out / name).read_bytes(), name
    assert "samples_per_s" not in (out / "metrics.json").read_text()  # rates go to the log and run.json
    assert json.loads((out / "run.json").read_text())["train_samples_per_s"] > 0
    environment = json.loads((again / "environment.json").read_text())
    assert environment["cpu_capability"] == "DEFAULT" and environment["weights_trained_on"] == summary["hardware"]
    assert environment["lock"]["sha256"] == sha256_file(REPO / "requirements.lock")


def test_checkpoint_loads_without_pickled_code(trained):
    out, _ = trained
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == EPOCHS and state["step"] == EPOCHS * 8
    assert {"model", "optimizer", "scheduler", "rng", "history", "config"} <= state.keys()
    assert set(state["rng"][0]) == {"python", "numpy", "torch", "cuda"}


def test_load_model_rebuilds_the_exported_network(trained):
    out, _ = trained
    card = json.loads((out / "model.json").read_text())
    assert card == {"arch": "vggish_fc", "num_classes": 12, "width_mult": 0.0625, "epoch": EPOCHS,
                    "feature_preset": "paper", "vocabulary": "vocabulary.parquet", "seed": 0,
                    "sha256": sha256_file(out / "model.safetensors")}
    assert (out / card["vocabulary"]).exists()
    model = load_model(out)
    assert not model.training
    reference = build_model("vggish_fc", 12, 0.0625).eval()
    reference.load_state_dict(torch.load(out / "checkpoint.pt", weights_only=True)["model"])
    x = torch.randn(5, 1, 100, 64)
    with torch.no_grad():
        assert torch.equal(model.embed(x), reference.embed(x))
        assert model.embed(x).shape == (5, 128)
    assert torch.equal(load_model(out / "model.safetensors").classifier.weight, model.classifier.weight)


def test_without_validation_clips_validation_is_skipped_and_said(tmp_path):
    folder = write_synthetic_features(tmp_path / "features", num_clips=32, val_clips=0)
    summary = pretrain(folder, tmp_path / "out", small_config(epochs=1), progress=False)
    history = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert history[0]["val_clips"] == 0 and "no validation clips" in history[0]["val_note"]
    assert summary["best_val_map"] is None


def test_a_source_smaller_than_one_batch_trains_on_all_its_clips_and_says_so(tmp_path, caplog):
    folder = write_synthetic_features(tmp_path / "features", num_clips=10, val_clips=0)
    summary = pretrain(folder, tmp_path / "out", small_config(epochs=2, batch_size=16), progress=False)
    assert summary["batch_size"] == 10 and summary["global_step"] == 2
    assert "too few for a batch of 16" in caplog.text


def test_no_training_clips_is_a_clear_error(tmp_path):
    folder = write_synthetic_features(tmp_path / "features", num_clips=4, val_clips=4)
    with pytest.raises(ValueError, match="0 training clips .* too few to train"):
        pretrain(folder, tmp_path / "out", small_config(epochs=1), progress=False)


def test_benchmark_reports_samples_per_second_relative_to_the_slowest_model():
    rows = benchmark(models=["vggish", "mobilenetv2"], device="cpu", batch=4, steps=1, warmup=1,
                     num_classes=12, width_mult=0.0625, print_table=False)
    assert [row["model"] for row in rows] == ["vggish", "mobilenetv2"]
    assert all(row["samples_per_s"] > 0 and row["parameters"] > 0 for row in rows)
    assert min(row["ratio_to_slowest"] for row in rows) == 1.0
    assert "samples/s" in format_table(rows)


def test_validation_metrics_agree_with_sklearn_on_clip_averaged_scores(features):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(100 * 64, 12)).eval()
    metrics = evaluate(model, iter_features(features, split="val"), num_classes=12, batch_size=10)
    clips = list(iter_features(features, split="val"))
    with torch.no_grad():
        scores = np.stack([torch.sigmoid(model(torch.from_numpy(c.mel).float())).mean(0).numpy() for c in clips])
    truth = np.zeros_like(scores, dtype=bool)
    for row, clip in enumerate(clips):
        truth[row, np.concatenate([clip.visual, clip.audio])] = True
    present = truth.any(0)
    assert metrics["val_clips"] == len(clips) == 32
    assert metrics["val_map"] == pytest.approx(average_precision_score(truth[:, present], scores[:, present]), abs=1e-5)
    assert metrics["val_top1"] == pytest.approx(truth[np.arange(len(clips)), scores.argmax(1)].mean())
    assert evaluate(model, iter_features(features, split="val", limit=5), num_classes=12)["val_clips"] == 5


def test_average_precision_agrees_with_sklearn_with_tied_scores():
    generator = torch.Generator().manual_seed(0)
    scores = (torch.rand(200, 30, generator=generator) * 5).round() / 5  # 6 distinct values: many ties
    targets = torch.rand(200, 30, generator=generator) < 0.2
    expected = [average_precision_score(targets[:, c].numpy(), scores[:, c].numpy()) for c in range(30)]
    assert average_precision(scores, targets).numpy() == pytest.approx(expected, abs=1e-6)
