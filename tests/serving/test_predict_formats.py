"""Every accepted request shape gives the same predictions as MLflow's own pyfunc on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.support.iris import COLUMNS
from tests.support.serving import ROWS, bodies

KINDS = ["logistic", "forest", "pipeline"]


def expected(pyfunc_models, kind, rows):
    return pyfunc_models[kind].predict(pd.DataFrame(rows, columns=COLUMNS)).tolist()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [name for name, _, _ in bodies(ROWS)])
def test_every_shape_matches_pyfunc(clients, pyfunc_models, kind, shape):
    endpoint, body = next((e, b) for name, e, b in bodies(ROWS) if name == shape)
    response = clients[kind].post(endpoint, json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    want = expected(pyfunc_models, kind, ROWS)
    assert len(set(want)) > 1, "the sample rows should not all be one class"
    assert payload["predictions"] == want
    if endpoint == "/invocations":
        assert set(payload) == {"predictions"}
    else:
        assert payload["model_name"] == f"iris-{kind}"
        assert payload["model_version"] == "1"


@pytest.mark.parametrize("kind", KINDS)
def test_single_row_shape(clients, pyfunc_models, kind):
    response = clients[kind].post("/predict", json={"inputs": ROWS[2]})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == expected(pyfunc_models, kind, [ROWS[2]])


@pytest.mark.parametrize("kind", KINDS)
def test_probabilities_match_predict_proba(clients, pyfunc_models, kind):
    response = clients[kind].post("/predict", json={"inputs": ROWS, "parameters": {"return_probability": True}})
    assert response.status_code == 200, response.text
    payload = response.json()
    native = pyfunc_models[kind].get_raw_model()
    want = native.predict_proba(pd.DataFrame(ROWS, columns=COLUMNS))
    np.testing.assert_allclose(np.array(payload["probabilities"]), want, rtol=1e-12)
    assert payload["classes"] == native.classes_.tolist()
    # The most probable class is the prediction.
    assert [payload["classes"][i] for i in np.argmax(want, axis=1)] == payload["predictions"]


def test_batch_accepts_more_rows_than_predict(clients, pyfunc_models, monkeypatch):
    rows = ROWS * 300  # 1,200 rows: over /predict's default limit of 1,000
    small = clients["logistic"].post("/predict", json={"inputs": rows})
    assert small.status_code == 422
    assert small.json()["error"]["code"] == "too_many_rows"
    batch = clients["logistic"].post("/predict/batch", json={"inputs": rows})
    assert batch.status_code == 200, batch.text
    assert batch.json()["predictions"] == expected(pyfunc_models, "logistic", rows)


def test_csv_on_invocations(clients, pyfunc_models):
    csv = ",".join(f'"{c}"' if " " in c else c for c in COLUMNS) + "\n" + "\n".join(",".join(map(str, r)) for r in ROWS)
    response = clients["forest"].post("/invocations", content=csv, headers={"content-type": "text/csv"})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == expected(pyfunc_models, "forest", ROWS)
