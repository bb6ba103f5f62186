"""The transfer stage end to end on tiny fixtures with a tiny model, the cache, and the report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_benchmarks import make_audioset, make_esc50, sounds
from test_vggish_release import write_release

from mmvideos.benchmarks import read_benchmark
from mmvideos.benchmarks.embeddings import LOGMEL_STATS, Extractor, embedding_extractor, extract, module_key, silence
from mmvideos.models import build_model
from mmvideos.data.runrecord import read_summary
from mmvideos.stages.report import report
from mmvideos.stages.transfer import TransferConfig, transfer

CFG = TransferConfig()


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    return sounds(tmp_path_factory.mktemp("voices"))


@pytest.fixture(scope="module")
def esc50_run(tmp_path_factory, audio, checkpoint):
    root = make_esc50(tmp_path_factory.mktemp("esc50"), audio)
    cache = tmp_path_factory.mktemp("cache")
    out = tmp_path_factory.mktemp("out_esc50")
    summary = transfer("esc50", root, checkpoint, out, CFG, progress=False, cache_dir=cache)
    return root, cache, out, summary


def test_transfer_writes_metrics_and_confusion(esc50_run):
    _, _, out, summary = esc50_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["benchmark"] == "esc50"
    assert [r["model"] for r in metrics["rows"]] == ["pretrained", "random_init", "logmel_stats",
                                                     "pretrained_1nn", "logmel_stats_1nn"]
    assert [r["pooling"] for r in metrics["rows"]] == ["concat", "concat", "mean_std", "concat", "mean_std"]
    # 5-s ESC-50 clips; the 1-NN rows use the features of the linear probes beside them
    assert [r["feature_dim"] for r in metrics["rows"]] == [5 * 128, 5 * 128, 128, 5 * 128, 128]
    for row in metrics["rows"]:
        assert set(row["fits"]) == set(row["splits"])
        if row["solver"] == "1-nn":
            assert all(f["train_clips"] == 24 for f in row["fits"].values())  # 4 of 5 folds of 30 clips
        else:
            assert all(f["steps"] > 0 and isinstance(f["stopped_early"], bool) for f in row["fits"].values())
        assert set(row["splits"]) == {f"fold{k}" for k in range(1, 6)}
        assert all(0.0 <= row[m] <= 1.0 for m in ("top1", "map", "auc"))
        assert row["top5"] is None  # 3 classes: the true one is always in the top 5, so it is not reported
    # tone vs noise vs speech is easy from raw log-mel statistics
    assert summary["logmel_stats.top1"] >= 0.8  # chance: 0.33
    assert summary["logmel_stats_1nn.top1"] >= 0.8
    confusion = json.loads((out / "confusion.json").read_text())
    assert confusion["labels"] == ["tone", "noise", "speech"]
    matrix = np.array(confusion["matrix"])
    assert matrix.shape == (3, 3) and matrix.sum() == 30 and (matrix.sum(1) == 10).all()
    assert np.trace(matrix) / 30 == pytest.approx(summary["pretrained.top1"])
    assert read_summary(out) == summary  # the result in summary.json (DVC tracks it), the seconds in run.json
    assert "seconds" not in json.loads((out / "summary.json").read_text())


def test_transfer_is_deterministic_and_cached(esc50_run, checkpoint, tmp_path):
    root, cache, _, first = esc50_run
    again = transfer("esc50", root, checkpoint, tmp_path, CFG, progress=False, cache_dir=cache)
    assert {k: v for k, v in again.items() if k != "seconds"} == {k: v for k, v in first.items() if k != "seconds"}
    # the cache is complete: an extractor that would fail if called is never called
    table = read_benchmark("esc50", root).table

    def refuse(frames):
        raise AssertionError("recomputed a cached clip")

    cached = extract(table, [Extractor("logmel_stats", LOGMEL_STATS.key, refuse)], cache, "esc50", str(root),
                     progress=False)
    assert cached["logmel_stats"].shape == (30, 128)
    # the same clip ids under another root are other clips: nothing is reused
    with pytest.raises(AssertionError, match="recomputed"):
        extract(table, [Extractor("logmel_stats", LOGMEL_STATS.key, refuse)], cache, "esc50", str(tmp_path),
                progress=False)


def test_random_weights_are_keyed_by_their_values():
    torch.manual_seed(0)
    small = build_model("vggish", 100, 0.0625)
    torch.manual_seed(0)
    larger_vocabulary = build_model("vggish", 200, 0.0625)
    torch.manual_seed(0)
    again = build_model("vggish", 100, 0.0625)
    assert module_key(small, "r") == module_key(again, "r") != module_key(larger_vocabulary, "r")


def test_embedding_extractor_pools_mean_and_max():
    def embed(x):  # [B, 1, 100, 64] -> [B, 2]: per-second mean and a per-second constant
        return torch.stack([x.mean((1, 2, 3)), torch.arange(len(x), dtype=torch.float32)], 1)

    frames = torch.stack([torch.full((100, 64), v) for v in (1.0, 3.0, 2.0)])  # [3, 100, 64]
    pooled = embedding_extractor("t", "t", embed).fn(frames)
    np.testing.assert_allclose(pooled, [2.0, 1.0, 3.0, 2.0])  # mean (2, 1) then max (3, 2)


def test_transfer_multilabel_audioset(tmp_path, audio, checkpoint):
    root = make_audioset(tmp_path / "as", audio)
    summary = transfer("audioset", root, checkpoint, tmp_path / "out", TransferConfig(solver="adam", max_steps=100, val_folds=2),
                       progress=False, cache_dir=tmp_path / "cache")
    assert summary["missing_clips"] == 1 and summary["clips"] == 9
    assert summary["pretrained.steps"][0] <= 100  # the step budget holds
    assert not (tmp_path / "out" / "confusion.json").exists()  # multi-label: no confusion matrix
    assert 0.0 <= summary["pretrained.map"] <= 1.0


def test_report_writes_the_table(esc50_run, tmp_path):
    _, _, out, summary = esc50_run
    tut = tmp_path / "tut"
    tut.mkdir()
    rows = [{"model": m, "top1": 0.5, "top5": 0.9, "map": 0.6, "auc": 0.8}
            for m in ("pretrained", "random_init", "logmel_stats")]
    (tut / "metrics.json").write_text(json.dumps({"benchmark": "tut2018", "arch": "vggish_bn", "rows": rows,
                                                  "paper": True}))
    result = report([out, tut], tmp_path / "report")
    assert result["benchmarks"] == ["esc50", "tut2018"]
    markdown = (tmp_path / "report" / "results.md").read_text()
    # a 30-clip folder in ESC-50's layout is named by its folder and size, with no paper column beside it
    root = esc50_run[0]
    assert f"- {root.name} (3 classes, 30 clips): 5 split(s)" in markdown
    assert (f"| Model | {root.name} Top-1 | {root.name} Top-5 | {root.name} mAP | {root.name} AUC | "
            "TUT 2018 Top-1 | TUT 2018 Top-1 (paper) |") in markdown
    assert "| vggish_bn pretrained |" in markdown and "| log-mel stats |" in markdown
    csv_lines = (tmp_path / "report" / "results.csv").read_text().splitlines()
    # 5 rows from the ESC-50-layout folder (3 probes, 2 1-NN), the paper's reference row for TUT 2018 only
    assert len(csv_lines) == 1 + 5 + 1 and csv_lines[0].startswith(f"Model,{root.name} Top-1")
    assert "human listeners" not in markdown and "| DCASE 2018 baseline |" in markdown
    assert "| vggish_bn pretrained 1-NN |" in markdown
    # our figures carry their interval; the rows are compared in words
    top1, (low, high) = summary["pretrained.top1"], summary["pretrained.top1_ci"]
    assert low <= top1 <= high and f"| vggish_bn pretrained | {100 * top1:.1f} [{100 * low:.1f}, {100 * high:.1f}] |" \
        in markdown
    assert f"- {root.name} Top-1: vggish_bn pretrained minus vggish_bn random init = " in markdown
    structured = json.loads((tmp_path / "report" / "results.json").read_text())
    assert {b["name"]: b["paper"] for b in structured["benchmarks"]} == {root.name: False, "TUT 2018": True}
    flat = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert flat["esc50.vggish_bn.pretrained.top1"] == pytest.approx(summary["pretrained.top1"])
    assert flat["esc50.vggish_bn.pretrained_1nn.top1"] == pytest.approx(summary["pretrained_1nn.top1"])
    assert flat["tut2018.logmel_stats.map"] == 0.6 and len(flat) == 5 * 3 + 3 * 4  # no Top-5 on 3 ESC-50 classes
    assert "| Pooling |" in markdown and "| concat |" in markdown
    assert (tmp_path / "report" / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_concat_pools_the_benchmark_length():
    def embed(x):  # [B, 1, 100, 64] -> [B, 2]: per-second mean and a per-second constant
        return torch.stack([x.mean((1, 2, 3)), torch.ones(len(x))], 1)

    frames = torch.stack([torch.full((100, 64), v) for v in (1.0, 3.0, 2.0)])  # 3 s
    short = embedding_extractor("t", "k", embed, pooling="concat", seconds=5)
    quiet = float(silence(1).mean())  # the log-mel of digital silence pads
    np.testing.assert_allclose(short.fn(frames), [1, 1, 3, 1, 2, 1, quiet, 1, quiet, 1], rtol=1e-6)
    np.testing.assert_allclose(embedding_extractor("t", "k", embed, pooling="concat", seconds=2).fn(frames),
                               [1, 1, 3, 1])  # cut to the first 2 s
    keys = {short.key, embedding_extractor("t", "k", embed, pooling="concat", seconds=10).key,
            embedding_extractor("t", "k", embed, pooling="mean_max").key}
    assert len(keys) == 3  # the pooling is part of the cache key
    with pytest.raises(ValueError, match="clip length"):
        embedding_extractor("t", "k", embed, pooling="concat")


def test_transfer_mean_max_pooling(esc50_run, checkpoint, tmp_path):
    root, cache, _, _ = esc50_run
    transfer("esc50", root, checkpoint, tmp_path, TransferConfig(pooling="mean_max"), progress=False, cache_dir=cache)
    rows = json.loads((tmp_path / "metrics.json").read_text())["rows"]
    assert [(r["pooling"], r["feature_dim"]) for r in rows] == [("mean_max", 256), ("mean_max", 256),
                                                                 ("mean_std", 128), ("mean_max", 256),
                                                                 ("mean_std", 128)]


def test_transfer_with_released_vggish(esc50_run, checkpoint, tmp_path):
    """The released VGGish gets its own row, from 0.96-s examples of its own front end."""
    root, cache, _, _ = esc50_run
    weights, pca, *_ = write_release(tmp_path, np.zeros(16000, np.float32) + 0.01)
    cfg = TransferConfig(baselines={"vggish_youtube100m": {"weights": str(weights), "pca": str(pca)}})
    summary = transfer("esc50", root, checkpoint, tmp_path / "out", cfg, progress=False, cache_dir=cache)
    rows = {r["model"]: r for r in json.loads((tmp_path / "out" / "metrics.json").read_text())["rows"]}
    assert rows["vggish_youtube100m"]["feature_dim"] == 5 * 128  # five examples of each 5-s clip
    assert 0.0 <= summary["vggish_youtube100m.top1"] <= 1.0
    assert any(p.name.startswith("released-vggish-examples-") for p in cache.iterdir())


def test_baselines_config_is_checked():
    with pytest.raises(ValueError, match="transfer.baselines.pretrained"):
        TransferConfig(baselines={"pretrained": {"weights": "x.pth"}})
    with pytest.raises(ValueError, match="transfer.baselines.vggish"):
        TransferConfig(baselines={"vggish": {"pca": "p.pth"}})
