"""Iris features as the sample models are trained on them, and rows to ask them about."""

from __future__ import annotations

COLUMNS = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]
# Three rows for a deployed model's answer: one of each class as the iris data labels them.
SAMPLE_ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
