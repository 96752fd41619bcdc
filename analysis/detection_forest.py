"""IsolationForest, fitted by scikit-learn, kept and scored as plain arrays (no pickle).

``Forest.fit`` trains ``sklearn.ensemble.IsolationForest`` with a fixed ``random_state`` and
exports each tree as five lists: the split feature (already mapped to the input column),
threshold, left and right child, and for leaves the path length scikit-learn credits (depth
+ c(n) - 1, its ``_decision_path_lengths`` and ``_average_path_length_per_tree``).  Scoring
walks those lists, so a model loaded from JSON needs neither pickle nor the scikit-learn
version that fitted it, and tests check it against ``score_samples`` of the fitted forest.

Sign convention, fixed here once: ``anomaly()`` is 2 ** (-E[h(x)] / c(psi)), in (0, 1],
*higher = more anomalous* (scikit-learn's ``score_samples`` is its negation).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EULER_GAMMA = 0.5772156649015329
LEAF = -1  # feature index of a leaf


class ForestError(ValueError):
    """A forest cannot be fitted or loaded from the given data."""


def average_path_length(n: int) -> float:
    """c(n): the mean path length of an unsuccessful search in a BST of n points."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + EULER_GAMMA) - 2.0 * (n - 1.0) / n


@dataclass(slots=True)
class Tree:
    """One isolation tree as parallel lists (index 0 is the root)."""

    feature: list[int]  # input column split on, LEAF for leaves
    threshold: list[float]  # go left when x[feature] <= threshold
    left: list[int]
    right: list[int]
    path: list[float]  # for leaves: depth + c(n_node_samples) - 1 (scikit-learn's credit)

    def path_length(self, x: Sequence[float]) -> float:
        """The credited path length of one sample (x already rounded to float32)."""
        node = 0
        feature, threshold, left, right = self.feature, self.threshold, self.left, self.right
        while feature[node] != LEAF:
            node = left[node] if x[feature[node]] <= threshold[node] else right[node]
        return self.path[node]

    def path_lengths(self, X: np.ndarray) -> np.ndarray:
        """Credited path lengths of many samples (vectorised level by level)."""
        feature = np.asarray(self.feature)
        threshold = np.asarray(self.threshold)
        left, right = np.asarray(self.left), np.asarray(self.right)
        node = np.zeros(len(X), dtype=np.int64)
        rows = np.arange(len(X))
        active = feature[node] != LEAF
        while active.any():
            idx = rows[active]
            current = node[idx]
            go_left = X[idx, feature[current]] <= threshold[current]
            node[idx] = np.where(go_left, left[current], right[current])
            active = feature[node] != LEAF
        return np.asarray(self.path)[node]


class Forest:
    """An isolation forest whose ``anomaly`` is higher for more anomalous samples."""

    def __init__(self, trees: list[Tree], max_samples: int, feature_names: Sequence[str]) -> None:
        if not trees:
            raise ForestError("a forest needs at least one tree")
        self.trees = trees
        self.max_samples = max_samples
        self.feature_names = tuple(feature_names)
        self._denominator = len(trees) * average_path_length(max_samples)

    @classmethod
    def fit(cls, X: np.ndarray, feature_names: Sequence[str], *, n_estimators: int = 100,
            max_samples: int = 256, random_state: int = 0) -> Forest:
        """Fit scikit-learn's IsolationForest on X (rows = samples) and export its trees."""
        from sklearn.ensemble import IsolationForest  # heavy import, only when fitting

        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or len(X) < 2 or X.shape[1] != len(feature_names):
            raise ForestError(f"need a 2-D matrix of >= 2 rows and {len(feature_names)} columns")
        model = IsolationForest(n_estimators=n_estimators, max_samples=min(max_samples, len(X)),
                                random_state=random_state)
        model.fit(X)
        trees: list[Tree] = []
        for estimator, columns in zip(model.estimators_, model.estimators_features_, strict=True):
            raw = estimator.tree_
            depths = raw.compute_node_depths()
            samples = raw.n_node_samples
            feature: list[int] = []
            path: list[float] = []
            for node in range(raw.node_count):
                if raw.children_left[node] == -1:
                    feature.append(LEAF)
                    path.append(float(depths[node]) + average_path_length(int(samples[node]))
                                - 1.0)
                else:
                    feature.append(int(columns[raw.feature[node]]))
                    path.append(0.0)
            trees.append(Tree(feature, [float(t) for t in raw.threshold],
                              [int(c) for c in raw.children_left],
                              [int(c) for c in raw.children_right], path))
        return cls(trees, int(model.max_samples_), feature_names)

    def anomaly(self, X: np.ndarray) -> np.ndarray:
        """Anomaly of each row of X: 2 ** (-mean path / c(psi)); higher = more anomalous."""
        X32 = np.asarray(X, dtype=np.float32).astype(np.float64)  # trees compare in float32
        depths = np.zeros(len(X32))
        for tree in self.trees:
            depths += tree.path_lengths(X32)
        if self._denominator == 0:
            return np.ones(len(X32))
        return np.power(2.0, -depths / self._denominator)

    def anomaly_one(self, x: Sequence[float]) -> float:
        """Anomaly of one sample (pure Python: cheaper than numpy for a single row)."""
        x32 = [float(v) for v in np.asarray(x, dtype=np.float32)]
        if self._denominator == 0:
            return 1.0
        total = sum(tree.path_length(x32) for tree in self.trees)
        return 2.0 ** (-total / self._denominator)

    def to_dict(self) -> dict[str, object]:
        """JSON form: numbers and lists only."""
        return {
            "max_samples": self.max_samples,
            "feature_names": list(self.feature_names),
            "trees": [[t.feature, t.threshold, t.left, t.right, t.path] for t in self.trees],
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Forest:
        """Inverse of to_dict; checks that every tree is well formed."""
        names = [str(n) for n in data["feature_names"]]  # type: ignore[attr-defined]
        trees: list[Tree] = []
        for item in data["trees"]:  # type: ignore[attr-defined]
            feature, threshold, left, right, path = item
            tree = Tree([int(v) for v in feature], [float(v) for v in threshold],
                        [int(v) for v in left], [int(v) for v in right], [float(v) for v in path])
            _check_tree(tree, len(names))
            trees.append(tree)
        return cls(trees, int(data["max_samples"]), names)  # type: ignore[call-overload]


def _check_tree(tree: Tree, n_features: int) -> None:
    """Reject a tree that could index out of range or loop (children must come later)."""
    size = len(tree.feature)
    if not size or any(len(a) != size for a in (tree.threshold, tree.left, tree.right, tree.path)):
        raise ForestError("tree arrays differ in length")
    for node in range(size):
        f = tree.feature[node]
        if f == LEAF:
            continue
        if not 0 <= f < n_features:
            raise ForestError(f"tree node {node} splits on unknown column {f}")
        if not (node < tree.left[node] < size and node < tree.right[node] < size):
            raise ForestError(f"tree node {node} has an invalid child")
