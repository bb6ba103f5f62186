"""Bootstrap intervals, fold spread and paired differences of transfer figures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import bootstrap

from mmvideos.evaluation.metrics import evaluate
from mmvideos.evaluation.uncertainty import (SplitScores, bootstrap_distribution, compare, decode, encode, interval,
                                             resample_weights, weighted_auc, weighted_map, weighted_top_n)


def test_weighted_metrics_with_unit_weights_are_scikit_learns():
    rng = np.random.default_rng(3)
    scores = np.round(rng.normal(size=(40, 6)), 1)  # rounded: many tied scores
    targets = (rng.random((40, 6)) < 0.3).astype(np.float32)
    targets[:, 5] = 0  # a class without positives is left out, as metrics.evaluate does
    ones = np.ones((1, 40))
    reference = evaluate(scores, targets)
    assert weighted_map(scores, targets, ones)[0] == pytest.approx(reference["map"])
    assert weighted_auc(scores, targets, ones)[0] == pytest.approx(reference["auc"])
    assert weighted_top_n(scores, targets, ones, 1)[0] == pytest.approx(reference["top1"])
    assert weighted_top_n(scores, targets, ones, 5)[0] == pytest.approx(reference["top5"])
    # integer weights are repeated clips
    counts = rng.integers(0, 3, size=40)
    repeated = np.repeat(np.arange(40), counts)
    assert weighted_map(scores, targets, counts[None].astype(float))[0] == pytest.approx(
        evaluate(scores[repeated], targets[repeated])["map"])
    assert weighted_auc(scores, targets, counts[None].astype(float))[0] == pytest.approx(
        evaluate(scores[repeated], targets[repeated])["auc"])


def test_the_interval_of_an_accuracy_matches_scipys_stratified_bootstrap():
    """Two folds of 30 clips, 3 classes: the figure is the mean of the fold accuracies, resampled within
    (fold, class); scipy.stats.bootstrap resamples each stratum as its own sample."""
    rng = np.random.default_rng(0)
    folds = np.repeat([0, 1], 30)
    classes = np.tile(np.repeat([0, 1, 2], 10), 2)
    hits = rng.random(60) < np.where(classes == 0, 0.9, 0.5)  # a fixed prediction set's correct clips
    scores = np.eye(3)[np.where(hits, classes, (classes + 1) % 3)]  # predicts the class where it hits
    targets = np.eye(3)[classes]
    resamples = 20000
    weights = resample_weights(folds * 3 + classes, np.arange(60), resamples, np.random.default_rng(1))
    splits = [SplitScores(scores[folds == f], targets[folds == f]) for f in (0, 1)]
    ours = interval(bootstrap_distribution(splits, [weights[:, folds == f] for f in (0, 1)])["top1"])

    strata = [hits[(folds == f) & (classes == c)].astype(float) for f in (0, 1) for c in (0, 1, 2)]

    def accuracy(*samples, axis=-1):
        per_fold = [sum(s.sum(axis=axis) for s in samples[3 * f:3 * f + 3]) / 30 for f in (0, 1)]
        return (per_fold[0] + per_fold[1]) / 2

    theirs = bootstrap(strata, accuracy, n_resamples=resamples, method="percentile", confidence_level=0.95,
                       random_state=np.random.default_rng(2)).confidence_interval
    assert accuracy(*strata) == pytest.approx(hits.mean())
    assert ours[0] == pytest.approx(theirs.low, abs=1 / 60 + 1e-9)  # one clip of Monte Carlo difference at most
    assert ours[1] == pytest.approx(theirs.high, abs=1 / 60 + 1e-9)
    assert ours[0] < hits.mean() < ours[1]


def test_recordings_are_resampled_whole_within_their_stratum():
    strata = np.array([0, 0, 0, 0, 1, 1])
    recordings = np.array(["a", "a", "b", "b", "c", "d"])
    weights = resample_weights(strata, recordings, 500, np.random.default_rng(0), min_units=1)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 2] == weights[:, 3]).all()
    assert (weights[:, :4].sum(axis=1) == 4).all() and (weights[:, 4:].sum(axis=1) == 2).all()
    assert set(np.unique(weights[:, 0])) == {0, 1, 2}  # a recording drawn 0, 1 or 2 times


def test_paired_differences_tell_a_real_gap_from_noise():
    rng = np.random.default_rng(5)
    n, c = 200, 4
    classes = rng.integers(0, c, n)
    targets = np.eye(c)[classes]
    good = targets * 2 + rng.normal(size=(n, c))  # informative
    noise_a, noise_b = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    weights = resample_weights(classes, np.arange(n), 2000, np.random.default_rng(1))
    rows = {name: bootstrap_distribution([SplitScores(s, targets)], [weights])
            for name, s in (("good", good), ("noise_a", noise_a), ("noise_b", noise_b))}
    figures = {name: evaluate(s, targets) for name, s in (("good", good), ("noise_a", noise_a), ("noise_b", noise_b))}
    verdict = {(d["a"], d["b"], d["metric"]): d for d in compare(rows, figures)}
    assert not verdict["good", "noise_a", "top1"]["within_noise"]
    assert verdict["good", "noise_a", "top1"]["ci"][0] > 0
    assert verdict["noise_a", "noise_b", "top1"]["within_noise"]
    assert verdict["noise_a", "noise_b", "map"]["within_noise"]


def test_strata_too_small_to_vary_are_pooled():
    """A stratum of one unit never varies when resampled alone (and one of n units keeps (n - 1) / n of its
    variance): 40 (fold, class) strata of one clip each would give an interval of width 0."""
    strata, hits = np.arange(40), np.tile([1.0, 0.0], 20)
    alone = resample_weights(strata, np.arange(40), 4000, np.random.default_rng(0), min_units=1)
    pooled = resample_weights(strata, np.arange(40), 4000, np.random.default_rng(0))
    assert np.std(alone @ hits / 40) == 0
    assert (pooled.sum(axis=1) == 40).all()
    assert np.std(pooled @ hits / 40) == pytest.approx(np.sqrt(0.25 / 40), rel=0.1)  # the binomial sd at 50%


def test_resampled_figures_survive_their_encoding():
    values = np.array([0.5, np.nan, 0.123456])
    back = decode(encode(values))
    assert np.isnan(back[1]) and back[[0, 2]] == pytest.approx(values[[0, 2]], abs=1e-7)


def test_an_interval_is_centred_on_the_figure_it_belongs_to():
    """Resampled figures that sit off the reported one keep their spread, not their shift; where they
    centre on it the interval is the percentile interval."""
    values = np.random.default_rng(0).normal(0.80, 0.05, 20000)
    assert interval(values, estimate=float(np.median(values))) == pytest.approx(interval(values))
    percentile, centred = interval(values), interval(values, estimate=0.65)
    assert not percentile[0] <= 0.65  # 0.1% of the resamples below the figure: the percentile interval misses it
    assert centred == pytest.approx([percentile[0] - 0.15, percentile[1] - 0.15], abs=2e-3)
    assert interval(values, estimate=0.99) == pytest.approx([percentile[0] + 0.19, 1.0], abs=2e-3)  # within [0, 1]


def test_the_map_interval_covers_the_expected_figure_on_small_test_sets():
    """5 splits of 8 classes with 2 test clips each (the demo has fewer): over 100 test sets drawn from
    one population, the centred 95% interval of mAP holds the expected figure about 95% of the time.
    The plain percentile interval does not: a resample's repeated positive raises its own precision,
    so the resampled mAPs run above the figure."""
    rng = np.random.default_rng(0)
    classes, splits, per_class = 8, 5, 2
    targets = np.eye(classes)[np.repeat(np.arange(classes), per_class)]

    def test_sets():
        return [targets + rng.normal(size=targets.shape) for _ in range(splits)]

    def figure_of(scores):  # equal to metrics.evaluate's mAP (the first test)
        return np.mean([weighted_map(s, targets, np.ones((1, len(targets))))[0] for s in scores])

    expected = np.mean([figure_of(test_sets()) for _ in range(200)])
    covered = {"centred": 0, "percentile": 0}
    for _ in range(100):
        scores = test_sets()
        figure = figure_of(scores)
        weights = [resample_weights(targets.argmax(1), np.arange(len(targets)), 200, rng) for _ in scores]
        values = bootstrap_distribution([SplitScores(s, targets) for s in scores], weights)["map"]
        for name, (low, high) in (("centred", interval(values, estimate=figure)), ("percentile", interval(values))):
            covered[name] += low <= expected <= high
    assert covered["centred"] >= 88
    assert covered["percentile"] <= 75
