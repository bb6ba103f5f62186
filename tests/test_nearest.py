"""The 1-NN control of the transfer results."""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler

from mmvideos.evaluation.nearest import nearest_neighbour_scores


def test_top_class_is_the_nearest_neighbours():
    rng = np.random.default_rng(0)
    train_x = rng.standard_normal((60, 8)) * np.array([100, 1, 1, 1, 1, 1, 1, 0.01])  # mixed scales
    labels = rng.integers(0, 4, 60)
    test_x = rng.standard_normal((25, 8)) * np.array([100, 1, 1, 1, 1, 1, 1, 0.01])
    scores = nearest_neighbour_scores(train_x, np.eye(4)[labels], test_x)
    scaler = StandardScaler().fit(train_x)
    expected = KNeighborsClassifier(1).fit(scaler.transform(train_x), labels).predict(scaler.transform(test_x))
    np.testing.assert_array_equal(scores.argmax(1), expected)
    assert np.isfinite(scores).all()


def test_multi_label_and_unseen_classes_score_finitely():
    train_x = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]])
    train_y = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0]])  # class 2 has no training clip
    scores = nearest_neighbour_scores(train_x, train_y, np.array([[0.9, 1.0], [2.0, 0.1]]))
    assert scores[0].argmax() == 1 and scores[1].argmax() == 0
    assert np.isfinite(scores).all() and (scores[:, 2] < scores[:, :2].min(1)).all()
