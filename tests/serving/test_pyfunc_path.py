"""Models without the sklearn flavor go through mlflow.pyfunc, with the same shapes and error format."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support.iris import COLUMNS
from tests.support.serving import ROWS, bodies, make_client


@pytest.fixture(scope="module")
def custom(tmp_path_factory):
    import mlflow.pyfunc

    from tests.support.sample_models import log_custom_pyfunc_model

    model_dir = log_custom_pyfunc_model(tmp_path_factory.mktemp("custom-pyfunc"))
    return make_client(model_dir), mlflow.pyfunc.load_model(str(model_dir))


def test_every_shape_matches_pyfunc(custom):
    client, pyfunc = custom
    want = pyfunc.predict(pd.DataFrame(ROWS, columns=COLUMNS)).tolist()
    assert client.get("/metadata").json()["flavor"] == "python_function"
    for name, endpoint, body in bodies(ROWS):
        response = client.post(endpoint, json=body)
        assert response.status_code == 200, (name, response.text)
        assert response.json()["predictions"] == want, name


def test_wrong_input_is_a_4xx_not_a_500(custom):
    client, _ = custom
    for body in ({"inputs": [[1, 2, "x", 4]]}, {"inputs": [[1, 2]]}, {"dataframe_records": [{"colour": 1}]}):
        response = client.post("/predict", json=body)
        assert 400 <= response.status_code < 500, (body, response.text)
        assert set(response.json()["error"]) == {"code", "message", "details", "request_id"}


def test_probabilities_need_the_native_path(custom):
    client, _ = custom
    response = client.post("/predict", json={"inputs": ROWS, "parameters": {"return_probability": True}})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "not_a_classifier"
