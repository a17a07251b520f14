"""Tree ensembles scored for a few rows at a time without scikit-learn's per-tree overhead.

A fitted ``RandomForestClassifier`` (or ``ExtraTreesClassifier``, or their regressors) calls each tree
in turn through Python and joblib: about 50 microseconds per tree whatever the number of rows, so a
100-tree forest costs milliseconds for one row. Here every tree's nodes are laid out in shared
arrays and all (row, tree) pairs walk down together, one vectorised step per level.

The result must be what scikit-learn gives, bit for bit: inputs are rounded to float32 as
scikit-learn does before comparing with the float64 thresholds, leaf values are added tree by tree
in the estimators' order and divided by their count, and the class is the first arg-max. Because
scikit-learn's internals differ between versions, ``compile_forest`` also scores sample rows both
ways at load and returns None (keep scikit-learn's own code) unless every answer is identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SUPPORTED = {
    "RandomForestClassifier",
    "ExtraTreesClassifier",
    "RandomForestRegressor",
    "ExtraTreesRegressor",
}


class CompiledForest:
    def __init__(self, forest: Any) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        self.is_classifier = hasattr(forest, "classes_")
        self.classes = getattr(forest, "classes_", None)
        self.n_features = int(forest.n_features_in_)
        self.tree_count = len(trees)
        sizes = [tree.node_count for tree in trees]
        self.roots = np.cumsum([0, *sizes[:-1]]).astype(np.intp)
        self.depth = max(int(tree.max_depth) for tree in trees)
        left, right, feature, threshold, values = [], [], [], [], []
        for root, tree in zip(self.roots, trees, strict=True):
            own = np.arange(tree.node_count, dtype=np.intp) + root
            is_leaf = tree.children_left < 0
            # A leaf points to itself on both sides, so walking past the tree's depth stays on it.
            left.append(np.where(is_leaf, own, tree.children_left + root))
            right.append(np.where(is_leaf, own, tree.children_right + root))
            feature.append(np.where(is_leaf, 0, tree.feature).astype(np.intp))
            threshold.append(np.where(is_leaf, np.inf, tree.threshold))
            if self.is_classifier:
                values.append(tree.value[:, 0, : len(forest.classes_)])
            else:
                values.append(tree.value[:, 0, 0])
        self.left = np.concatenate(left)
        self.right = np.concatenate(right)
        self.feature = np.concatenate(feature)
        self.threshold = np.concatenate(threshold).astype(np.float64)
        self.values = np.concatenate(values).astype(np.float64)

    def leaves(self, matrix: np.ndarray) -> np.ndarray:
        """Leaf index per (row, tree)."""
        rounded = np.asarray(matrix, dtype=np.float32).astype(np.float64)
        rows = np.arange(rounded.shape[0], dtype=np.intp)[:, None]
        node = np.broadcast_to(self.roots, (rounded.shape[0], self.tree_count)).copy()
        for _ in range(self.depth):
            go_left = rounded[rows, self.feature[node]] <= self.threshold[node]
            node = np.where(go_left, self.left[node], self.right[node])
        return node

    def _mean_of_trees(self, matrix: np.ndarray) -> np.ndarray:
        per_tree = self.values[self.leaves(matrix)]  # rows x trees [x classes]
        total = np.zeros(per_tree[:, 0].shape, dtype=np.float64)
        for index in range(self.tree_count):  # in the estimators' order, as scikit-learn adds them
            total += per_tree[:, index]
        total /= self.tree_count
        return total

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return self._mean_of_trees(matrix)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        mean = self._mean_of_trees(matrix)
        if not self.is_classifier:
            return mean
        assert self.classes is not None
        return self.classes.take(np.argmax(mean, axis=1), axis=0)


def compile_forest(model: Any, samples: np.ndarray) -> CompiledForest | None:
    """A compiled copy of ``model`` if it is a supported single-output forest that gives exactly
    scikit-learn's answers on ``samples`` (and on perturbed copies of them); None otherwise."""
    if type(model).__name__ not in SUPPORTED or getattr(model, "n_outputs_", 1) != 1:
        return None
    if not getattr(model, "estimators_", None):
        return None
    try:
        compiled = CompiledForest(model)
        if samples.ndim != 2 or samples.shape[1] != compiled.n_features:
            return None
        generator = np.random.default_rng(0)
        spread = np.abs(samples).mean(axis=0) + 1.0
        noisy = (
            samples[generator.integers(0, len(samples), 200)] + generator.normal(0, 1, (200, samples.shape[1])) * spread
        )
        checks = np.concatenate([samples, noisy])
        if not np.array_equal(compiled.predict(checks), model.predict(checks)):
            return None
        if compiled.is_classifier and not np.array_equal(compiled.predict_proba(checks), model.predict_proba(checks)):
            return None
        for row in checks[:20]:
            if not np.array_equal(compiled.predict(row[None, :]), model.predict(row[None, :])):
                return None
    except Exception:  # anything unexpected in the estimator's layout: keep scikit-learn's own code
        return None
    return compiled
