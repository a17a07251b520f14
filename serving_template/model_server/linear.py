"""Linear models scored with their own coefficients, skipping scikit-learn's per-call input checks.

For a single row, ``LogisticRegression.predict`` spends nearly all its time validating the input
(dtype, finiteness, array API and DataFrame detection); the server has already checked that the
matrix is finite float64 of the right width. ``decision_function`` is ``X @ coef_.T + intercept_``,
computed here with the same numpy operations, and the class is picked the way
``LinearClassifierMixin.predict`` picks it. ``compile_linear`` scores sample rows both ways at load
and returns None (keep scikit-learn's own code) unless every answer is identical.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class CompiledLinear:
    def __init__(self, model: Any, is_classifier: bool) -> None:
        self.coef_t = np.ascontiguousarray(np.asarray(model.coef_, dtype=np.float64).T)
        self.intercept = np.asarray(model.intercept_, dtype=np.float64)
        self.is_classifier = is_classifier
        self.classes = getattr(model, "classes_", None)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        scores = matrix @ self.coef_t + self.intercept
        if not self.is_classifier:
            return scores.ravel() if scores.ndim == 2 and scores.shape[1] == 1 else scores
        assert self.classes is not None
        if scores.ndim == 1 or scores.shape[1] == 1:
            return self.classes.take((scores.ravel() > 0).astype(int), axis=0)
        return self.classes.take(scores.argmax(axis=1), axis=0)


def compile_linear(model: Any, samples: np.ndarray) -> CompiledLinear | None:
    """A compiled copy of a dense scikit-learn linear model that gives exactly its predictions on
    ``samples`` (and perturbed copies of them); None for anything else."""
    try:
        from sklearn.linear_model._base import LinearClassifierMixin, LinearModel
    except ImportError:  # a scikit-learn without these bases: nothing to compile
        return None
    is_classifier = isinstance(model, LinearClassifierMixin)
    if not (is_classifier or isinstance(model, LinearModel)):
        return None
    # Only the plain decision function: subclasses that change predict (e.g. with a link function) are left alone.
    own_predict = type(model).predict
    if own_predict not in (LinearClassifierMixin.predict, LinearModel.predict):
        return None
    coef = getattr(model, "coef_", None)
    if not isinstance(coef, np.ndarray) or coef.dtype != np.float64:  # sparse or float32 coefficients
        return None
    try:
        compiled = CompiledLinear(model, is_classifier)
        if samples.ndim != 2 or samples.shape[1] != compiled.coef_t.shape[0]:
            return None
        generator = np.random.default_rng(0)
        spread = np.abs(samples).mean(axis=0) + 1.0
        picks = samples[generator.integers(0, len(samples), 200)]
        checks = np.concatenate([samples, picks + generator.normal(0, 1, picks.shape) * spread])
        if not np.array_equal(compiled.predict(checks), model.predict(checks)):
            return None
        for row in checks[:20]:
            if not np.array_equal(compiled.predict(row[None, :]), model.predict(row[None, :])):
                return None
    except Exception:  # anything unexpected in the estimator: keep scikit-learn's own code
        return None
    return compiled
