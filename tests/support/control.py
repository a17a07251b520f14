"""Control-service test helpers: settings on a throwaway data dir, example requests, the error format."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from control_api.settings import Settings
from tests.support.paths import EXAMPLES_DIR

if TYPE_CHECKING:
    from fastapi.testclient import TestClient

EXAMPLE = EXAMPLES_DIR / "train_random_forest.py"


def b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.b64encode(raw).decode()


def script(body: str) -> str:
    return b64(textwrap.dedent(body))


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides``: a settings section given in both is merged key by key, one level deep."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def make_settings(data_dir: Path, venv_cache: Path, **overrides) -> Settings:
    values = {
        "data_dir": data_dir,
        "target": {"kind": "none"},
        "training": {"venv_cache_dir": venv_cache, "timeout_seconds": 300},
    }
    return Settings(**merged(values, overrides))


def example_request(model_name: str = "iris-rf", **extra) -> dict:
    body = {
        "script_content": b64(EXAMPLE.read_bytes()),
        "script_name": "train_random_forest.py",
        "model_name": model_name,
        "requirements": ["scikit-learn"],
    }
    body.update(extra)
    return body


def assert_error_format(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}, error
    assert error["request_id"] == response.headers["x-request-id"]
    assert error["message"]
    if code:
        assert error["code"] == code, error
    return error


def pyfunc_predictions(client: TestClient, name: str, version: str) -> list:
    """What ``mlflow.pyfunc`` predicts for the sample iris rows with the service's registered version."""
    import mlflow.pyfunc
    import pandas as pd

    from tests.support.iris import COLUMNS
    from tests.support.iris import SAMPLE_ROWS as ROWS

    settings = client.app.state.services.settings
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri())
    mlflow.set_registry_uri(settings.mlflow_registry_uri())
    try:
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        return [int(x) for x in model.predict(pd.DataFrame(ROWS, columns=COLUMNS))]
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
