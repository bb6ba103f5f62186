"""A 1-nearest-neighbour control beside the linear probes of the transfer stage.

A linear probe can lift weak features a long way; a 1-NN classifier cannot, so it shows how much
of a result is already in the raw geometry of the features (on small benchmarks such as ESC-50,
1-NN on log-mel statistics can come close to a pre-trained embedding's linear probe).

Features are standardised with the training clips' mean and standard deviation first, so that
no dimension dominates the Euclidean distance by its scale alone (the log-mel statistics mix
means near -5 with standard deviations near 1). A test clip's score for class ``c`` is minus
its distance to the nearest training clip labelled ``c``: the top-1 class is exactly the 1-NN
prediction, and the scores still rank every class, so Top-5, mAP and AUC are defined for
single- and multi-label benchmarks alike.
"""

from __future__ import annotations

import numpy as np

#: Test clips per distance block: bounds memory to ``block x train clips`` distances.
BLOCK = 1024


def nearest_neighbour_scores(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Scores ``[n_test, C]``: minus the distance to the nearest training clip of each class.

    Args:
        train_x: ``[n_train, D]`` training features.
        train_y: ``[n_train, C]`` 0/1 training labels.
        test_x: ``[n_test, D]`` test features.

    Returns:
        float64 scores, higher = nearer; a class without training clips scores below every other.
    """
    import torch

    mean, std = train_x.mean(0), train_x.std(0)
    std = np.where(std > 0, std, 1.0)  # a constant dimension carries no distance
    train = torch.as_tensor((train_x - mean) / std, dtype=torch.float64)
    test = torch.as_tensor((test_x - mean) / std, dtype=torch.float64)
    members = [torch.as_tensor(np.flatnonzero(train_y[:, c])) for c in range(train_y.shape[1])]
    scores = np.full((len(test_x), train_y.shape[1]), -np.inf)
    for start in range(0, len(test_x), BLOCK):
        distances = torch.cdist(test[start:start + BLOCK], train)  # [block, n_train]
        for c, rows in enumerate(members):
            if len(rows):
                scores[start:start + BLOCK, c] = -distances[:, rows].amin(1).numpy()
    finite = np.isfinite(scores)
    # metrics need finite scores: unseen classes sit one unit below the farthest seen one
    return np.where(finite, scores, (scores[finite].min() - 1.0) if finite.any() else 0.0)
