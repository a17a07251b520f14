"""Bad input is a 4xx in the error format (never a 500); the operational endpoints say what is served."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from tests.support.iris import COLUMNS
from tests.support.serving import ROWS, make_client

BAD_BODIES = [
    ("not-json", b"{not json", 400, "invalid_json"),
    ("not-an-object", b"[1, 2, 3]", 422, "invalid_body"),
    ("no-known-key", b'{"rows": [[1, 2, 3, 4]]}', 422, "invalid_body"),
    ("empty-list", b'{"inputs": []}', 422, "invalid_shape"),
    ("too-few-values", b'{"inputs": [[1, 2, 3]]}', 422, "invalid_shape"),
    ("too-many-values", b'{"inputs": [1, 2, 3, 4, 5]}', 422, "invalid_shape"),
    ("ragged-rows", b'{"inputs": [[1, 2, 3, 4], [1, 2]]}', 422, "invalid_shape"),
    ("string-value", b'{"inputs": [[1, 2, "three", 4]]}', 422, "invalid_type"),
    ("boolean-value", b'{"inputs": [[1, 2, true, 4]]}', 422, "invalid_type"),
    ("null-value", b'{"inputs": [[1, 2, null, 4]]}', 422, "invalid_type"),
    ("nested-value", b'{"inputs": [[1, 2, [3], 4]]}', 422, "invalid_type"),
    (
        "unknown-column",
        b'{"dataframe_split": {"columns": ["a", "b", "c", "d"], "data": [[1, 2, 3, 4]]}}',
        422,
        "invalid_columns",
    ),
    ("missing-record-key", b'{"dataframe_records": [{"sepal length (cm)": 1}]}', 422, "invalid_columns"),
    (
        "uneven-columns",
        b'{"inputs": {"sepal length (cm)": [1, 2], "sepal width (cm)": [1], '
        b'"petal length (cm)": [1], "petal width (cm)": [1]}}',
        422,
        "invalid_shape",
    ),
    ("mixed-rows", b'{"inputs": [[1, 2, 3, 4], 5]}', 422, "invalid_shape"),
]


@pytest.mark.parametrize("endpoint", ["/predict", "/invocations"])
@pytest.mark.parametrize("name,body,status,code", BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_a_4xx_in_the_error_format(clients, endpoint, name, body, status, code):
    response = clients["forest"].post(endpoint, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["request_id"] == response.headers["x-request-id"]


def test_wrong_columns_name_the_expected_ones(clients):
    response = clients["logistic"].post("/predict", json={"dataframe_records": [{"sepal length (cm)": 1, "colour": 2}]})
    assert response.status_code == 422
    details = response.json()["error"]["details"]
    assert details["expected_columns"] == COLUMNS
    assert details["unexpected"] == ["colour"]
    assert "petal width (cm)" in details["missing"]


def test_probability_on_request_of_a_model_without_it_is_refused(iris_model_dirs, tmp_path):
    # A regression model has no predict_proba: asking for it is the client's mistake, not a 500.
    import shutil

    import cloudpickle
    from sklearn.linear_model import LinearRegression

    model_dir = tmp_path / "regressor"
    shutil.copytree(iris_model_dirs["logistic"], model_dir)
    with open(model_dir / "model.pkl", "wb") as handle:
        cloudpickle.dump(LinearRegression().fit([[0, 0, 0, 0], [1, 1, 1, 1]], [0.0, 1.0]), handle)
    client = make_client(model_dir)
    ok = client.post("/predict", json={"inputs": [[1, 1, 1, 1]]})
    assert ok.status_code == 200 and ok.json()["predictions"] == pytest.approx([1.0])
    refused = client.post("/predict", json={"inputs": [[1, 1, 1, 1]], "parameters": {"return_probability": True}})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "not_a_classifier"


def test_request_id_is_echoed_or_made(clients):
    given = clients["logistic"].get("/health", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = clients["logistic"].post("/predict", json={"inputs": ROWS})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    unsafe = clients["logistic"].get("/health", headers={"x-request-id": "a\tb c"})
    assert unsafe.headers["x-request-id"] != "a\tb c"
    missing = clients["logistic"].get("/nowhere")
    assert missing.status_code == 404
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]


def test_health_metadata_and_docs(clients):
    client = clients["logistic"]
    health = client.get("/health").json()
    assert health == {"status": "healthy", "model": {"name": "iris-logistic", "version": "1", "run_id": "run-logistic"}}
    metadata = client.get("/metadata").json()
    assert metadata["model_name"] == "iris-logistic"
    assert metadata["model_uri"] == "models:/iris-logistic/1"
    assert metadata["mlflow_uri"] == "sqlite:///test.db"
    assert metadata["model_loaded"] is True
    assert metadata["flavor"] == "sklearn"
    assert [c["name"] for c in metadata["signature"]["inputs"]] == COLUMNS
    assert metadata["signature"]["outputs"] == [{"type": "long", "required": True}]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", metadata["loaded_at"])
    schema = client.get("/openapi.json").json()
    example = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert example["dataframe_split"]["columns"] == COLUMNS
    assert client.get("/docs").status_code == 200


def test_ready_is_503_until_the_model_is_loaded(iris_model_dirs, monkeypatch):
    import threading

    from model_server import app as app_module

    release = threading.Event()
    original = app_module.LoadedModel

    def slow_loaded_model(*args, **kwargs):
        release.wait(10)
        return original(*args, **kwargs)

    monkeypatch.setattr(app_module, "LoadedModel", slow_loaded_model)
    client = TestClient(app_module.create_app(iris_model_dirs["logistic"], load_in_background=True))
    not_ready = client.get("/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["error"]["code"] == "model_not_loaded"
    early = client.post("/predict", json={"inputs": ROWS})
    assert early.status_code == 503
    assert client.get("/health").status_code == 200  # alive while loading
    release.set()
    for _ in range(200):
        if client.get("/ready").status_code == 200:
            break
        threading.Event().wait(0.05)
    assert client.get("/ready").status_code == 200
    assert client.post("/predict", json={"inputs": ROWS}).status_code == 200


def test_ready_file_is_written_once_loaded(iris_model_dirs, tmp_path, monkeypatch):
    ready_file = tmp_path / "ready"
    monkeypatch.setenv("READY_FILE", str(ready_file))
    make_client(iris_model_dirs["logistic"])
    assert ready_file.exists()


def test_metrics_count_requests_predictions_and_errors(iris_model_dirs):
    client = make_client(iris_model_dirs["forest"])
    client.post("/predict", json={"inputs": ROWS})
    client.post("/predict", json={"inputs": ROWS[:1]})
    client.post("/predict", json={"inputs": [["x", 1, 2, 3]]})
    text = client.get("/metrics").text

    def value(pattern):
        match = re.search("^" + re.escape(pattern) + r" (\S+)$", text, re.MULTILINE)
        assert match, f"{pattern} not in metrics:\n{text}"
        return float(match.group(1))

    assert value('model_requests_total{endpoint="/predict",status="200"}') == 2
    assert value('model_requests_total{endpoint="/predict",status="422"}') == 1
    assert value("model_predictions_total") == len(ROWS) + 1
    assert value('model_errors_total{code="invalid_type"}') == 1
    assert value('model_request_seconds_count{endpoint="/predict"}') == 3


def test_name_selecting_pipeline_is_fed_a_frame_and_plain_models_an_array(clients):
    state = lambda kind: clients[kind].app.state.model_state.model  # noqa: E731 - the app under the request-id wrapper
    assert state("pipeline").fast_path and state("pipeline").needs_frame
    assert state("logistic").fast_path and not state("logistic").needs_frame
