"""The paper's four evaluation metrics (section 4), in a small registry.

Every metric takes ``scores`` (float ``[N, C]``, higher = more likely) and ``targets`` (0/1
``[N, C]``, one or more positives per row) and returns a float in [0, 1]:

* ``top1``, ``top5``: Top-n accuracy, "the fraction of test samples that contain at least one of
  the ground truth labels in the top-n predictions" (ties broken by class index, as
  ``torch.topk`` would; with fewer than n classes every sample counts);
* ``map``: mean over classes of average precision (scikit-learn's step-wise AP, no
  interpolation);
* ``auc``: mean over classes of the area under the ROC curve.

A class with no positive among the test samples has no defined AP or ROC AUC (nor has one
whose every sample is positive, for AUC); such classes are left out of the mean rather than
counted as 0 or 1, as AudioSet evaluations do. That matters for small test sets (one ESC-50
fold holds every class, a tiny fixture may not).

scikit-learn is imported by the metrics that use it, so that the registry's names load quickly.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np


def _check(scores: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, targets = np.asarray(scores, dtype=np.float64), np.asarray(targets)
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"scores {scores.shape} and targets {targets.shape} must both be [N, C]")
    return scores, targets.astype(bool)


def top_n_accuracy(scores: np.ndarray, targets: np.ndarray, n: int) -> float:
    """Fraction of samples with any true label among the ``n`` highest scores."""
    scores, targets = _check(scores, targets)
    n = min(n, scores.shape[1])
    # stable sort of -scores: equal scores keep class order, so ties go to the lower index
    top = np.argsort(-scores, axis=1, kind="stable")[:, :n]  # [N, n]
    return float(np.take_along_axis(targets, top, axis=1).any(axis=1).mean())


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes with at least one positive of the average precision."""
    scores, targets = _check(scores, targets)
    valid = targets.any(axis=0)
    if not valid.any():
        raise ValueError("no class has a positive sample: mAP is undefined")
    from sklearn.metrics import average_precision_score

    return float(np.mean([average_precision_score(targets[:, c], scores[:, c]) for c in np.flatnonzero(valid)]))


def mean_roc_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean over classes with both positives and negatives of the ROC AUC."""
    scores, targets = _check(scores, targets)
    valid = targets.any(axis=0) & ~targets.all(axis=0)
    if not valid.any():
        raise ValueError("no class has both positive and negative samples: AUC is undefined")
    from sklearn.metrics import roc_auc_score

    return float(np.mean([roc_auc_score(targets[:, c], scores[:, c]) for c in np.flatnonzero(valid)]))


#: Metric name -> function(scores [N, C], targets [N, C]) -> float; the names are the keys of
#: ``metrics.json`` rows.
METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "top1": partial(top_n_accuracy, n=1),
    "top5": partial(top_n_accuracy, n=5),
    "map": mean_average_precision,
    "auc": mean_roc_auc,
}


def evaluate(scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Every metric of :data:`METRICS` on one test set."""
    return {name: fn(scores, targets) for name, fn in METRICS.items()}
