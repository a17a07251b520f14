"""Linear models scored by model_server.linear give exactly scikit-learn's predictions, or are not compiled."""

from __future__ import annotations

import numpy as np
import pytest
from model_server.linear import CompiledLinear, compile_linear
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, SGDClassifier


@pytest.mark.parametrize(
    "make_model, binary",
    [
        (lambda: LogisticRegression(max_iter=500), False),
        (lambda: LogisticRegression(max_iter=500), True),
        (lambda: SGDClassifier(random_state=0), False),
    ],
    ids=["logistic-multiclass", "logistic-binary", "sgd"],
)
def test_classifiers_match_sklearn_exactly(make_model, binary):
    features, target = load_iris(return_X_y=True)
    if binary:
        target = np.asarray(["no", "yes"])[(target == 1).astype(int)]
    model = make_model().fit(features, target)
    compiled = compile_linear(model, features[:3])
    assert compiled is not None
    unseen = np.random.default_rng(5).normal(5, 3, (400, 4))
    assert np.array_equal(compiled.predict(unseen), model.predict(unseen))
    assert np.array_equal(compiled.predict(unseen[:1]), model.predict(unseen[:1]))


def test_other_models_and_mismatches_are_not_compiled(monkeypatch):
    features, target = load_iris(return_X_y=True)
    assert compile_linear(RandomForestClassifier(n_estimators=3).fit(features, target), features[:3]) is None
    model = LogisticRegression(max_iter=500).fit(features, target)
    assert compile_linear(model, features[:3, :2]) is None  # samples that do not fit the model
    monkeypatch.setattr(CompiledLinear, "predict", lambda self, matrix: np.zeros(len(matrix), dtype=int))
    assert compile_linear(model, features[:3]) is None


def test_the_server_scores_the_iris_logistic_regression_compiled(iris_model_dirs):
    from model_server.model import LoadedModel, read_model_info

    loaded = LoadedModel(iris_model_dirs["logistic"], read_model_info(iris_model_dirs["logistic"]))
    assert isinstance(loaded.compiled, CompiledLinear)
    rows = np.random.default_rng(0).normal(5, 2, (50, 4))
    assert np.array_equal(loaded.predict_matrix(rows), loaded.native.predict(rows))
    pipeline = LoadedModel(iris_model_dirs["pipeline"], read_model_info(iris_model_dirs["pipeline"]))
    assert pipeline.compiled is None  # a Pipeline is scored by scikit-learn itself
