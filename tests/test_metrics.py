"""The metric registry (scikit-learn based) against torchmetrics on random data, and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassAccuracy, MultilabelAUROC, MultilabelAveragePrecision

from mmvideos.evaluation.metrics import METRICS, evaluate, mean_average_precision, mean_roc_auc, top_n_accuracy

# torchmetrics warns about the degenerate classes the fixtures include on purpose
pytestmark = pytest.mark.filterwarnings("ignore:No (positive|negative) samples:UserWarning")


def random_multilabel(seed: int, n: int = 300, c: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.15).astype(np.int64)
    targets[:, 0] = 0  # a class without positives: left out of mAP and AUC
    targets[:, 1] = 1  # a class without negatives: left out of AUC
    # scores correlated with the targets, so the metrics are far from chance and from 1
    scores = rng.random((n, c)) + 0.6 * targets
    return scores, targets


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_map_matches_torchmetrics(seed):
    scores, targets = random_multilabel(seed)
    per_class = MultilabelAveragePrecision(num_labels=targets.shape[1], average=None)(
        torch.from_numpy(scores).float(), torch.from_numpy(targets)).double().numpy()
    expected = per_class[targets.any(axis=0)].mean()
    assert mean_average_precision(scores, targets) == pytest.approx(expected, abs=1e-6)
    assert 0.3 < expected < 0.95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_torchmetrics(seed):
    scores, targets = random_multilabel(seed)
    per_class = MultilabelAUROC(num_labels=targets.shape[1], average=None)(
        torch.from_numpy(scores).float(), torch.from_numpy(targets)).double().numpy()
    valid = targets.any(axis=0) & ~targets.all(axis=0)
    assert mean_roc_auc(scores, targets) == pytest.approx(per_class[valid].mean(), abs=1e-6)


@pytest.mark.parametrize("k", [1, 5])
def test_top_n_matches_torchmetrics_on_single_label(k):
    rng = np.random.default_rng(k)
    labels = rng.integers(0, 10, size=400)
    scores = rng.random((400, 10))
    scores[np.arange(200), labels[:200]] += 0.5  # half the samples lean to their label
    expected = MulticlassAccuracy(num_classes=10, top_k=k, average="micro")(
        torch.from_numpy(scores).float(), torch.from_numpy(labels)).item()
    targets = np.eye(10, dtype=np.int64)[labels]
    assert top_n_accuracy(scores, targets, k) == pytest.approx(expected, abs=1e-6)


def test_top_n_counts_any_true_label():
    scores = np.array([[0.9, 0.5, 0.1, 0.0],
                       [0.9, 0.5, 0.1, 0.0],
                       [0.1, 0.2, 0.3, 0.9]])
    targets = np.array([[0, 1, 1, 0],   # true labels ranked 2nd and 3rd
                        [1, 0, 0, 1],   # one true label ranked 1st
                        [1, 0, 0, 0]])  # ranked last
    assert top_n_accuracy(scores, targets, 1) == pytest.approx(1 / 3)
    assert top_n_accuracy(scores, targets, 2) == pytest.approx(2 / 3)
    assert top_n_accuracy(scores, targets, 5) == 1.0  # more than C: every sample counts


def test_registry_and_errors():
    scores, targets = random_multilabel(0)
    results = evaluate(scores, targets)
    assert list(results) == list(METRICS) == ["top1", "top5", "map", "auc"]
    assert all(0.0 <= v <= 1.0 for v in results.values())
    with pytest.raises(ValueError, match="no class has a positive"):
        mean_average_precision(scores, np.zeros_like(targets))
    with pytest.raises(ValueError, match=r"must both be \[N, C\]"):
        top_n_accuracy(scores, targets[:, :3], 1)
