"""Old pins deploy: a training environment for ``scikit-learn==1.3.0``, ``pandas==1.5.3`` or
``xgboost==1.7.6`` gets dependencies that fit the pin, and the serving image runs the same versions.

Each case trains on the iris data (numpy arrays, as many scripts do), logs the model as users do and,
for the check only, the model's own predictions on a few rows; the deployed URL must give exactly
those, and its ``/metadata`` must list the training environment's versions. One service (and so one
MLflow store, one environment cache and one runtime-image cache) serves the whole module.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from fastapi.testclient import TestClient

from control_api.app import create_app
from tests.support.control import b64, make_settings

pytestmark = pytest.mark.timeout(1800)  # each case builds a training environment and a runtime image

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]

# The first version's example: a RandomForest, mlflow.sklearn.log_model(model, "model"), nothing else.
SKLEARN_SCRIPT = """
import mlflow, mlflow.sklearn
from sklearn.datasets import load_iris
from sklearn.ensemble import RandomForestClassifier

X, y = load_iris(return_X_y=True)
with mlflow.start_run():
    model = RandomForestClassifier(n_estimators=20, random_state=42).fit(X, y)
    mlflow.sklearn.log_model(model, "model")
    mlflow.log_dict({"predictions": [int(p) for p in model.predict(ROWS)]}, "expected.json")
"""

# pandas 1.5.3 holds the data, and the model's first step uses it too, so the served model needs it.
PANDAS_SCRIPT = """
import mlflow, mlflow.sklearn, pandas as pd
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

iris = load_iris()
frame = pd.DataFrame(iris.data, columns=["a", "b", "c", "d"])
assert pd.__version__ == "1.5.3", pd.__version__
with mlflow.start_run():
    as_frame = FunctionTransformer(lambda rows: pd.DataFrame(rows).clip(lower=0).to_numpy())
    model = make_pipeline(as_frame, LogisticRegression(max_iter=500)).fit(frame.to_numpy(), iris.target)
    mlflow.sklearn.log_model(model, "model")
    mlflow.log_dict({"predictions": [int(p) for p in model.predict(ROWS)]}, "expected.json")
"""

XGBOOST_SCRIPT = """
import mlflow, mlflow.xgboost, numpy as np, xgboost as xgb
from sklearn.datasets import load_iris

X, y = load_iris(return_X_y=True)
with mlflow.start_run():
    model = xgb.XGBClassifier(n_estimators=20, max_depth=3).fit(X, y)
    mlflow.xgboost.log_model(model, "model")
    mlflow.log_dict({"predictions": [int(p) for p in model.predict(np.array(ROWS))]}, "expected.json")
"""

CASES = {
    "scikit-learn==1.3.0": ("scikit-learn", "1.3.0", ["scikit-learn==1.3.0"], SKLEARN_SCRIPT),
    "pandas==1.5.3": ("pandas", "1.5.3", ["pandas==1.5.3", "scikit-learn"], PANDAS_SCRIPT),
    "xgboost==1.7.6": ("xgboost", "1.7.6", ["xgboost==1.7.6", "scikit-learn"], XGBOOST_SCRIPT),
}


@pytest.fixture(scope="module")
def old_pins_service(tmp_path_factory, docker_available, registry_url, base_image, kustomize_cmd):
    from tests.support.availability import require

    require(docker_available, "Docker Engine")
    root = tmp_path_factory.mktemp("old-pins")
    namespace = f"pins-{uuid.uuid4().hex[:8]}"
    settings = make_settings(
        root / "data",
        root / "venvs",
        target={"kind": "local", "ready_timeout_seconds": 240},
        registry={"url": registry_url, "repository_prefix": "mlops-e2e"},
        build={"base_image": base_image},
        api={"allowed_namespaces": [namespace], "default_namespace": namespace},
        training={"timeout_seconds": 600},
    )
    client = TestClient(create_app(settings))
    client.__enter__()
    try:
        yield client, namespace
    finally:
        runtime = client.app.state.services.local_runtime
        try:
            for workload in runtime.list():
                if workload.namespace == namespace:
                    runtime.delete(workload.namespace, workload.name)
        finally:
            client.__exit__(None, None, None)


def _logged_predictions(client: TestClient, run_id: str) -> list[int]:
    import mlflow

    settings = client.app.state.services.settings
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri())
    try:
        return mlflow.artifacts.load_dict(f"runs:/{run_id}/expected.json")["predictions"]
    finally:
        mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("case", list(CASES))
def test_an_old_pin_deploys_and_serves_what_it_trained(old_pins_service, case):
    client, _ = old_pins_service
    package, version, requirements, script = CASES[case]
    model_name = f"pin-{package}"
    body = client.post(
        "/mlops/deploy",
        json={
            "model_name": model_name,
            "script_name": "train.py",
            "script_content": b64(f"ROWS = {ROWS!r}\n" + script),
            "requirements": requirements,
        },
    ).json()
    assert body["status"] == "deployed", json.dumps(body, indent=1)[:6000]

    outputs = client.app.state.services.journal.get(body["deployment_id"]).outputs
    trained_with = outputs["training_packages"]
    assert trained_with[package] == version
    # NumPy as of the pinned release: 1.x for all three (each predates NumPy 2).
    assert trained_with["numpy"].startswith("1."), trained_with

    metadata = httpx.get(body["endpoints"]["metadata"], timeout=10).json()
    served_with = metadata["packages"]
    assert served_with.get(package) == version, served_with
    # The image installs only what serving needs (matplotlib, say, stays out), but whatever it
    # installs of the training environment's packages is the trained version.
    shared = sorted(set(served_with) & set(trained_with))
    assert "numpy" in shared
    assert {name: served_with[name] for name in shared} == {name: trained_with[name] for name in shared}

    predicted = httpx.post(body["inference_url"], json={"inputs": ROWS}, timeout=30)
    assert predicted.status_code == 200, predicted.text
    assert [int(p) for p in predicted.json()["predictions"]] == _logged_predictions(client, body["run_id"])
