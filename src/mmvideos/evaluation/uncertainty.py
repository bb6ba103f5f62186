"""How far a transfer figure can be trusted: bootstrap intervals, fold spread and paired differences.

A benchmark's figure is the mean over its protocol's splits of a metric on each split's test
clips (:mod:`mmvideos.evaluation.metrics`). Its uncertainty from the choice of test clips is
estimated by the bootstrap:

* **Resampling unit and strata.** Within each split's test set, units are drawn with
  replacement inside strata: for single-label benchmarks the stratum is (split, class), for
  multi-label ones the split. The unit is the clip, or the source recording where the benchmark
  has sources (ESC-50's ``src_file``: clips cut from one recording are not independent draws).
  A resample is a vector of counts per clip (the count of its unit), so every metric is computed
  as a weighted metric: the weights of a resample are the same for every row of the table,
  which makes the difference between two rows a *paired* bootstrap.
* **Intervals.** The 95% percentile interval of the resampled figures
  (``scipy.stats.bootstrap(method="percentile")`` with the same strata gives the same interval;
  the tests compare them), centred on the reported figure: moved by the reported figure minus the
  resamples' median. For a mean (Top-n) the resamples centre on the figure already and the move is
  nil. mAP's do not: a resample repeats clips, and a repeated positive raises its own precision
  (its copies rank together), so on small test sets every resample can sit above (or, with the
  tied scores of 1-NN, below) the figure. That shift is an artefact of the resampling (a real test
  set has no copies), not a bias of the figure, so the interval keeps the resamples' spread and
  drops their shift. In tests/test_uncertainty.py's simulation (5 splits, 8 classes, 2 test clips
  each, 100 test sets from one population) the centred interval holds the expected mAP 97 times,
  the plain percentile interval 60 times.
* **Differences.** Two rows differ beyond noise when the 95% interval of their paired difference
  (centred on the difference of their figures) excludes 0; otherwise the table says "within noise".

The weighted metrics are vectorised over resamples (a ``[B, n]`` weight matrix): Top-n is a
weighted mean of per-clip hits; AP and ROC AUC follow scikit-learn's definitions (step-wise AP,
tied scores one threshold; AUC with ties counted half), with classes lacking a positive (or, for
AUC, a negative) in a resample left out of the mean as in :mod:`mmvideos.evaluation.metrics`.
With unit weights they equal scikit-learn's figures (tests check it).
"""

from __future__ import annotations

import base64
import dataclasses
import itertools

import numpy as np

#: Coverage of every interval.
LEVEL = 0.95


@dataclasses.dataclass(frozen=True)
class SplitScores:
    """One split's test clips: their scores ``[n, C]`` and 0/1 targets ``[n, C]``."""

    scores: np.ndarray
    targets: np.ndarray


#: Strata with fewer units than this are pooled into one: a stratum of n units resampled alone keeps only
#: (n - 1) / n of its variance (none for one unit), so 52 demo clips in 40 (fold, class) strata would
#: give an interval a third of the true width.
MIN_STRATUM = 5


def resample_weights(strata: np.ndarray, units: np.ndarray, resamples: int, rng: np.random.Generator,
                     min_units: int = MIN_STRATUM) -> np.ndarray:
    """``[resamples, n]`` bootstrap counts of ``n`` clips: within each stratum, its units (``units``:
    a label per clip) drawn with replacement as many times as the stratum has units; a clip's weight is
    the count of its unit. Strata of fewer than ``min_units`` units are resampled together as one."""
    strata, units = np.asarray(strata).astype(str), np.asarray(units)
    small = [s for s in np.unique(strata) if len(np.unique(units[strata == s])) < min_units]
    strata = np.where(np.isin(strata, small), "\0pooled", strata)
    weights = np.zeros((resamples, len(strata)), dtype=np.float64)
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        names, which = np.unique(units[members], return_inverse=True)
        counts = rng.multinomial(len(names), np.full(len(names), 1.0 / len(names)), size=resamples)  # [B, u]
        weights[:, members] = counts[:, which]
    return weights


def _grouped(order_scores: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values in sorted scores (a tie is one threshold)."""
    return np.flatnonzero(np.r_[True, order_scores[1:] != order_scores[:-1]])


def weighted_top_n(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray, n: int) -> np.ndarray:
    """Top-n accuracy per resample ``[B]``; ties broken by class index as :func:`metrics.top_n_accuracy`."""
    top = np.argsort(-scores, axis=1, kind="stable")[:, :min(n, scores.shape[1])]
    hits = np.take_along_axis(targets.astype(bool), top, axis=1).any(axis=1).astype(np.float64)  # [n]
    return (weights @ hits) / weights.sum(axis=1)


def _per_class(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray, descending: bool):
    """Per class: weights of positives and negatives summed per distinct score ``[B, G]``, in score order."""
    for c in range(scores.shape[1]):
        order = np.argsort(-scores[:, c] if descending else scores[:, c], kind="stable")
        starts = _grouped(scores[order, c])
        y = targets[order, c].astype(np.float64)
        w = weights[:, order]
        yield np.add.reduceat(w * y, starts, axis=1), np.add.reduceat(w * (1.0 - y), starts, axis=1)


def weighted_map(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean average precision per resample ``[B]`` over the classes with a positive in it."""
    per_class = []
    for pos, neg in _per_class(scores, targets, weights, descending=True):
        tps, fps = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(tps + fps > 0, tps / (tps + fps), 0.0)
            ap = (pos * precision).sum(axis=1) / tps[:, -1]  # recall steps by pos / total positives
        per_class.append(np.where(tps[:, -1] > 0, ap, np.nan))
    return _nanmean(np.stack(per_class, axis=1))


def weighted_auc(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean ROC AUC per resample ``[B]`` over the classes with both positives and negatives in it."""
    per_class = []
    for pos, neg in _per_class(scores, targets, weights, descending=False):
        below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each score
        total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (total_pos * total_neg)
        per_class.append(np.where((total_pos > 0) & (total_neg > 0), auc, np.nan))
    return _nanmean(np.stack(per_class, axis=1))


def _nanmean(values: np.ndarray) -> np.ndarray:
    valid = ~np.isnan(values)
    with np.errstate(invalid="ignore"):
        return np.where(valid.any(axis=1), np.nansum(values, axis=1) / np.maximum(valid.sum(axis=1), 1), np.nan)


#: Metric name (as :data:`mmvideos.evaluation.metrics.METRICS`) -> weighted version over resamples.
WEIGHTED = {
    "top1": lambda s, t, w: weighted_top_n(s, t, w, 1),
    "top5": lambda s, t, w: weighted_top_n(s, t, w, 5),
    "map": weighted_map,
    "auc": weighted_auc,
}


def bootstrap_distribution(splits: list[SplitScores], weights: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per metric, the resampled benchmark figure ``[B]``: the mean over splits of each split's weighted
    metric (``weights[i]`` ``[B, n_i]`` for split ``i``)."""
    out = {}
    for name, fn in WEIGHTED.items():
        per_split = np.stack([fn(s.scores, s.targets, w) for s, w in zip(splits, weights)], axis=1)  # [B, S]
        out[name] = _nanmean(per_split)
    return out


def interval(values: np.ndarray, level: float = LEVEL, estimate: float | None = None,
             limits: tuple[float, float] = (0.0, 1.0)) -> list[float] | None:
    """The percentile interval of resampled figures (``None`` if there are none); given the
    ``estimate`` they resample, centred on it (moved by ``estimate`` minus their median) and kept
    within the metric's ``limits``."""
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    if estimate is not None:
        shift = estimate - float(np.median(values))
        low, high = max(low + shift, limits[0]), min(high + shift, limits[1])
    return [float(low), float(high)]


def spread(per_split: dict[str, dict[str, float]]) -> dict[str, float | None]:
    """Per metric, the standard deviation over the protocol's splits (``None`` with one split)."""
    names = next(iter(per_split.values()))
    return {m: (float(np.std([s[m] for s in per_split.values()], ddof=1)) if len(per_split) > 1 else None)
            for m in names}


def compare(distributions: dict[str, dict[str, np.ndarray]], figures: dict[str, dict[str, float]],
            level: float = LEVEL) -> list[dict]:
    """Paired differences between every two rows: ``{"a", "b", "metric", "difference", "ci",
    "within_noise"}`` (``difference`` = a - b on the reported figures; ``ci`` its paired bootstrap interval,
    centred on it as :func:`interval`; ``within_noise``: the interval covers 0)."""
    out = []
    for a, b in itertools.combinations(distributions, 2):
        for metric in distributions[a]:
            difference = float(figures[a][metric] - figures[b][metric])
            ci = interval(distributions[a][metric] - distributions[b][metric], level, difference, (-1.0, 1.0))
            if ci is None:
                continue
            out.append({"a": a, "b": b, "metric": metric, "difference": difference, "ci": ci,
                        "within_noise": bool(ci[0] <= 0.0 <= ci[1])})
    return out


def over_seeds(figures: list[dict[str, float]], per_split: list[dict[str, dict[str, float]]],
               resampled: list[dict[str, np.ndarray]], metrics: list[str]) -> dict:
    """A row's figures over its seeds (each seed's ``figures``, ``per_split`` figures and
    ``resampled`` figures): per metric the mean (the reported figure) and sd over the seeds, the
    per-split means and their spread, and the seeds' resampled figures averaged resample by
    resample, with the interval around the reported figure (none without resampled figures)."""
    stats = {m: mean_sd([f[m] for f in figures]) for m in metrics}
    splits = {s: {m: float(np.mean([p[s][m] for p in per_split])) for m in metrics} for s in (per_split or [{}])[0]}
    pooled = {m: np.mean([r[m] for r in resampled], axis=0) for m in metrics if resampled and m in resampled[0]}
    return {**{m: stats[m][0] for m in metrics}, "seed_sd": {m: stats[m][1] for m in metrics},
            "fold_sd": spread(splits) if splits else {}, "splits": splits,
            "ci": {m: interval(v, estimate=stats[m][0]) for m, v in pooled.items()},
            "resampled": {m: encode(v) for m, v in pooled.items()}}


def mean_sd(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (``None`` for one value) of per-seed figures."""
    return float(np.mean(values)), (float(np.std(values, ddof=1)) if len(values) > 1 else None)



def encode(values: np.ndarray) -> str:
    """Resampled figures as compact text for a JSON file (base64 of little-endian float32; NaN kept)."""
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode("ascii")


def decode(text: str) -> np.ndarray:
    """The figures :func:`encode` wrote."""
    return np.frombuffer(base64.b64decode(text), dtype="<f4").astype(np.float64)
