"""Deploys of a tiny model through an in-process control service, and waiting for their outcome.

Every deploy trains ``TINY_SCRIPT``: a two-feature LogisticRegression logged as a real MLflow sklearn
model, with its pip requirements given, so MLflow skips requirement inference (a subprocess that
reloads the model). Since the model's requirements are the same every time, all deploys share one
training environment and one runtime image.
"""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from tests.support.control import b64

TINY_SCRIPT = """\
import mlflow
import mlflow.sklearn
from sklearn.linear_model import LogisticRegression

X = [[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.2], [0.2, 0.8], [0.8, 0.1]]
y = [0, 1, 0, 1, 0, 1]
with mlflow.start_run():
    model = LogisticRegression().fit(X, y)
    mlflow.log_param("features", 2)
    mlflow.log_metric("accuracy", float(model.score(X, y)))
    mlflow.sklearn.log_model(
        model, name="model", serialization_format="cloudpickle",
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_cloudpickle=True),
    )
{after}
"""

# The variant for "MLflow dies during a deploy": after logging its model the script says so in a file
# in its working directory and waits for the test's go-ahead, so the test can kill MLflow exactly
# between the script's last MLflow call and the service's next one.
HOLD_AFTER_LOGGING = """\
import pathlib, time
pathlib.Path("model-logged").write_text("yes")
deadline = time.time() + 240
while not pathlib.Path("go-on").exists() and time.time() < deadline:
    time.sleep(0.05)
"""


def tiny_request(model_name: str, *, hold: bool = False, **extra) -> dict:
    body = {
        "script_content": b64(TINY_SCRIPT.format(after=HOLD_AFTER_LOGGING if hold else "")),
        "script_name": "train_tiny.py",
        "model_name": model_name,
        "requirements": ["scikit-learn"],
    }
    body.update(extra)
    return body


def wait_final(client: TestClient, deployment_id: str, timeout: float = 300) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/mlops/deployments/{deployment_id}").json()
        if body["status"] in ("deployed", "registered", "failed", "timed_out"):
            return body
        if time.monotonic() > deadline:
            pytest.fail(f"deployment {deployment_id} still {body['status']} after {timeout:.0f} s: {body}")
        time.sleep(0.3)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def deploy(client: TestClient, request: dict) -> dict:
    """Synchronous deploy: the HTTP answer must be 200 with a final status."""
    response = client.post("/mlops/deploy", json=request)
    assert response.status_code == 200, response.text
    return response.json()


def retry(client: TestClient, deployment_id: str) -> dict:
    response = client.post(f"/mlops/deployments/{deployment_id}/retry")
    assert response.status_code == 202, response.text
    return wait_final(client, deployment_id)


def step_attempts(body: dict) -> dict[str, int]:
    return {s["name"]: s["attempts"] for s in body["steps"]}
