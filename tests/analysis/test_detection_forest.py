"""The IsolationForest kept as arrays: same scores as scikit-learn, one sign, safe to load."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from mirrorscope.analysis.detection_forest import (
    Forest,
    ForestError,
    average_path_length,
)

NAMES = ("a", "b", "c", "d")


def _data(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, 4))
    X[:, 3] = np.round(X[:, 3])  # ties, like counts
    return X


def test_scores_match_scikit_learn() -> None:
    """anomaly() is exactly -score_samples() of the same fitted IsolationForest."""
    X = _data()
    forest = Forest.fit(X, NAMES, random_state=7, n_estimators=50)
    reference = IsolationForest(n_estimators=50, random_state=7).fit(X)
    probe = np.vstack([X[:50], _data(1)[:50] * 3])
    expected = -reference.score_samples(probe)
    assert np.allclose(forest.anomaly(probe), expected, rtol=0, atol=1e-12)
    one_by_one = [forest.anomaly_one(row) for row in probe]
    assert np.allclose(one_by_one, expected, rtol=0, atol=1e-12)


def test_higher_means_more_anomalous() -> None:
    """The sign convention: a far-away point scores above a central one."""
    forest = Forest.fit(_data(), NAMES, random_state=0)
    assert forest.anomaly_one([8.0, 8.0, -8.0, 5.0]) > forest.anomaly_one([0.0, 0.0, 0.0, 0.0])


def test_deterministic_for_a_seed() -> None:
    """Same data and random_state: the same trees."""
    a = Forest.fit(_data(), NAMES, random_state=3, n_estimators=20).to_dict()
    b = Forest.fit(_data(), NAMES, random_state=3, n_estimators=20).to_dict()
    assert a == b


def test_json_round_trip() -> None:
    """A forest loaded from JSON scores exactly like the one that was fitted."""
    X = _data()
    forest = Forest.fit(X, NAMES, random_state=1, n_estimators=30)
    loaded = Forest.from_dict(json.loads(json.dumps(forest.to_dict())))
    assert np.array_equal(loaded.anomaly(X[:100]), forest.anomaly(X[:100]))


def test_average_path_length_matches_the_paper() -> None:
    """c(n) = 2 H(n-1) - 2 (n-1)/n with H(i) ~ ln(i) + Euler's gamma (Liu et al. 2008)."""
    assert average_path_length(1) == 0.0
    assert average_path_length(2) == 1.0
    assert average_path_length(256) == pytest.approx(
        2 * (np.log(255) + 0.5772156649) - 2 * 255 / 256)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.__setitem__(0, [0, 1.0, 5, 6, 0.0]),  # children out of range
        lambda t: t.__setitem__(0, [[0], [1.0], [0], [0], [0.0]]),  # a node pointing at itself
        lambda t: t.__setitem__(0, [[9, -1, -1], [0.0, 0, 0], [1, -1, -1], [2, -1, -1],
                                    [0.0, 1, 1]]),  # unknown column
        lambda t: t.__setitem__(0, [[-1], [0.0], [-1], [-1]]),  # an array missing
    ],
)
def test_malformed_trees_are_rejected(mutate: object) -> None:
    """A tampered model cannot index out of range or loop forever."""
    doc = Forest.fit(_data(), NAMES, random_state=0, n_estimators=2).to_dict()
    trees = doc["trees"]
    mutate(trees)  # type: ignore[operator]
    with pytest.raises((ForestError, ValueError, TypeError)):
        Forest.from_dict(doc)


def test_fit_needs_a_matrix() -> None:
    """Misuse is an exception, not a silent model."""
    with pytest.raises(ForestError):
        Forest.fit(np.zeros((1, 4)), NAMES)
    with pytest.raises(ForestError):
        Forest.fit(np.zeros((10, 3)), NAMES)
