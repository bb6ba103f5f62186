"""The transfer classifier converges: it matches scikit-learn's cross-validated logistic regression.

The reference is ``LogisticRegressionCV`` on standardised features with C chosen by
cross-validation on the training folds only, as the issue asks; ours must come within 2 points
of its Top-1 (on the 52-clip demo benchmark one clip is about 2 points).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import LeaveOneGroupOut, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mmvideos.benchmarks import read_benchmark
from mmvideos.benchmarks.embeddings import LOGMEL_STATS, embedding_extractor, extract, module_key
from mmvideos.demo.benchmark import build_demo_benchmark
from mmvideos.evaluation.fit import FitConfig, fit_classifier, predict, validation_folds
from mmvideos.models import build_model
from mmvideos.stages.transfer import multi_hot, run_protocol

pytestmark = pytest.mark.usefixtures("one_torch_thread")
CPU = torch.device("cpu")


def sklearn_top1(x_train, y_train, x_test, y_test, cv) -> float:
    """Top-1 of LogisticRegressionCV (C by cross-validation on the training clips only)."""
    reference = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=10, cv=cv, max_iter=5000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence notes at the weakest penalties
        reference.fit(x_train, y_train)
    return float((reference.predict(x_test) == y_test).mean())


def separable_set(seed: int = 0, n: int = 360, dim: int = 20, classes: int = 4):
    """Points labelled by the arg-max of a random linear map: linearly separable by construction."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    labels = (x @ rng.standard_normal((dim, classes))).argmax(1)
    return x, labels


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_linear_classifier_matches_sklearn_on_a_separable_set(solver):
    x, labels = separable_set()
    train, test = slice(0, 240), slice(240, None)
    y = multi_hot([[c] for c in labels], 4)
    fit = fit_classifier(x[train], y[train], False, FitConfig(solver=solver, dropout=0.3), CPU)
    ours = float((predict(fit.model, x[test], False, CPU).argmax(1) == labels[test]).mean())
    reference = sklearn_top1(x[train], labels[train], x[test], labels[test], StratifiedKFold(5))
    assert reference >= 0.9  # the reference itself fits the set
    assert ours >= reference - 0.02, (solver, ours, reference)
    assert 0 < fit.steps < FitConfig().max_steps and fit.stopped_early  # it stopped by itself
    assert fit.record()["steps"] == fit.steps


@pytest.mark.parametrize("multi_label", [False, True])
def test_lbfgs_reaches_the_penalised_optimum(multi_label):
    """The L-BFGS fit is the penalised logistic regression's optimum: scikit-learn's at the same
    penalty (``C = 1 / (l2 N)``; per class ``1 / (C l2 N)`` for the multi-label loss, which
    averages over classes) gives the same probabilities."""
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((120, 6)) * [1, 2, 3, 0.5, 1, 10] + 4).astype(np.float32)
    logits = x @ rng.standard_normal((6, 3))
    if multi_label:
        y = (logits + rng.standard_normal(logits.shape) > np.median(logits, 0)).astype(np.float32)
    else:
        y = multi_hot([[c] for c in (logits + 3 * rng.standard_normal(logits.shape)).argmax(1)], 3)
    fit = fit_classifier(x, y, multi_label, FitConfig(weight_decay=1e-3), CPU)
    ours = predict(fit.model, x, multi_label, CPU)
    scaled = StandardScaler().fit_transform(x.astype(np.float64))
    if multi_label:
        c = 1 / (fit.l2 * len(x) * y.shape[1])
        reference = np.stack([LogisticRegression(C=c, tol=1e-10, max_iter=10000).fit(scaled, y[:, k])
                              .predict_proba(scaled)[:, 1] for k in range(y.shape[1])], 1)
    else:
        reference = LogisticRegression(C=1 / (fit.l2 * len(x)), tol=1e-10, max_iter=10000).fit(
            scaled, y.argmax(1)).predict_proba(scaled)
    assert np.abs(ours - reference).max() < 1e-3
    assert fit.stopped_early and fit.steps > 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo benchmark and two feature sets: log-mel statistics, a random network concatenated."""
    root = build_demo_benchmark(tmp_path_factory.mktemp("demo"))
    bench = read_benchmark("esc50", root)
    torch.manual_seed(0)
    network = build_model("vggish_fc", 100, 0.25).eval()
    extractors = [LOGMEL_STATS, embedding_extractor("random_concat", module_key(network, "random"), network.embed,
                                                    pooling="concat", seconds=bench.clip_seconds)]
    features = extract(bench.table, extractors, tmp_path_factory.mktemp("cache"), "esc50", str(root), progress=False)
    return bench, features


@pytest.mark.parametrize("row", ["logmel_stats", "random_concat"])
def test_demo_benchmark_rows_reach_sklearn(demo, row):
    bench, features = demo
    x = features[row]
    assert x.shape == (52, 128 if row == "logmel_stats" else 640)
    labels = np.array([c[0] for c in bench.table["labels"]])
    folds = bench.table["fold"].to_numpy()
    reference = []
    for split in bench.protocol:
        train, test = np.isin(folds, split.train), np.isin(folds, split.test)
        cv = list(LeaveOneGroupOut().split(x[train], labels[train], folds[train]))  # the training folds
        reference.append(sklearn_top1(x[train], labels[train], x[test], labels[test], cv))
    mean, _, fits, _, _ = run_protocol(bench, x, FitConfig(dropout=0.3), CPU)
    assert mean["top1"] >= np.mean(reference) - 0.02, (row, mean["top1"], np.mean(reference))
    assert set(fits) == {s.name for s in bench.protocol}
    assert all(f["steps"] > 0 and f["stopped_early"] and "l2" in f for f in fits.values())


def test_validation_folds_are_stratified_and_keep_groups_together():
    labels = np.repeat(np.arange(3), 20)
    groups = np.arange(60) // 2  # pairs of clips from one recording
    masks = validation_folds(multi_hot([[c] for c in labels], 3), False, 5, 0, groups)
    assert len(masks) == 5 and (np.sum(masks, 0) == 1).all()  # disjoint, together every clip once
    for held in masks:
        assert set(labels[held]) == {0, 1, 2}  # every class in every validation split
        assert all(held[groups == g].all() or not held[groups == g].any() for g in np.unique(groups))


def test_adam_budget_does_not_shrink_with_the_set():
    """Ten clips get as many steps as they need, not ``epochs x 1``: the fit separates them."""
    x, labels = separable_set(seed=1, n=40, dim=8, classes=2)
    y = multi_hot([[c] for c in labels], 2)
    fit = fit_classifier(x, y, False, FitConfig(solver="adam", val_folds=2, val_rounds=2), CPU)
    assert fit.steps >= 500  # 40 clips at batch 128: 100 epochs would have been 100 steps
    assert (predict(fit.model, x, False, CPU).argmax(1) == labels).mean() >= 0.95


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="linear classifier only"):
        FitConfig(solver="lbfgs", hidden_units=64)
    with pytest.raises(ValueError, match="solver must be one of"):
        FitConfig(solver="sgd")
