"""Tree ensembles scored by model_server.forest give exactly scikit-learn's answers, or are not compiled."""

from __future__ import annotations

import numpy as np
import pytest
from model_server.forest import CompiledForest, compile_forest
from sklearn.datasets import make_classification, make_regression
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor, RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression


def classification(labels=None):
    features, target = make_classification(400, 6, n_informative=4, n_classes=3, random_state=0)
    return features, (np.asarray(labels)[target] if labels is not None else target)


@pytest.mark.parametrize("estimator", [RandomForestClassifier, ExtraTreesClassifier])
@pytest.mark.parametrize("labels", [None, ["setosa", "versicolor", "virginica"]], ids=["int-classes", "str-classes"])
def test_classifiers_match_sklearn_bit_for_bit(estimator, labels):
    features, target = classification(labels)
    model = estimator(n_estimators=40, random_state=0).fit(features, target)
    compiled = compile_forest(model, features[:3])
    assert compiled is not None
    unseen = np.random.default_rng(7).normal(0, 3, (300, features.shape[1]))
    for rows in (unseen, unseen[:1], unseen[:8]):
        assert np.array_equal(compiled.predict(rows), model.predict(rows))
        assert np.array_equal(compiled.predict_proba(rows), model.predict_proba(rows))


@pytest.mark.parametrize("estimator", [RandomForestRegressor, ExtraTreesRegressor])
def test_regressors_match_sklearn_bit_for_bit(estimator):
    features, target = make_regression(400, 5, random_state=0)
    model = estimator(n_estimators=30, random_state=0).fit(features, target)
    compiled = compile_forest(model, features[:3])
    assert compiled is not None
    unseen = np.random.default_rng(3).normal(0, 2, (300, 5))
    assert np.array_equal(compiled.predict(unseen), model.predict(unseen))


def test_other_models_and_multi_output_forests_are_not_compiled():
    features, target = classification()
    assert compile_forest(LogisticRegression(max_iter=500).fit(features, target), features[:3]) is None
    two_outputs = np.stack([target, target[::-1]], axis=1)
    multi = RandomForestClassifier(n_estimators=5, random_state=0).fit(features, two_outputs)
    assert compile_forest(multi, features[:3]) is None
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(features, target)
    assert compile_forest(model, features[:3, :4]) is None  # samples that do not fit the model


def test_a_forest_whose_compiled_answers_differ_keeps_sklearns_code(monkeypatch):
    features, target = classification()
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(features, target)
    monkeypatch.setattr(CompiledForest, "predict", lambda self, matrix: np.zeros(len(matrix), dtype=int) - 1)
    assert compile_forest(model, features[:3]) is None


def test_the_server_scores_the_iris_forest_compiled(iris_model_dirs):
    from model_server.model import LoadedModel, read_model_info

    loaded = LoadedModel(iris_model_dirs["forest"], read_model_info(iris_model_dirs["forest"]))
    assert loaded.compiled is not None
    rows = np.random.default_rng(0).normal(5, 2, (50, 4))
    assert np.array_equal(loaded.predict_matrix(rows), loaded.native.predict(rows))
