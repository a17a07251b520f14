"""The requirements a trained model is logged with, when the service runs the script.

MLflow infers them by loading the model in a new interpreter unless the script chooses them; the
training hook answers with the environment's exact versions instead (``mlops-lock.txt``, written by
the environment cache). A script's own choice stays its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from control_api.training.environments import LOCK_FILE, lock_lines, write_lock
from control_api.training.hook import mlops_training_hook as hook
from tests.support.control import example_request, script

RANDOM_FOREST_WITH_OWN_REQUIREMENTS = """
    import mlflow, mlflow.sklearn
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    X, y = load_iris(return_X_y=True, as_frame=True)
    with mlflow.start_run():
        model = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
        chosen = ["scikit-learn", "mlflow", "chosen-by-script==1.0"]
        mlflow.sklearn.log_model(model, name="model", pip_requirements=chosen)
"""


# ---- the lock and the merge, as pure functions -----------------------------------------------------


def test_the_lock_pins_the_packages_and_the_installed_mlflow(tmp_path: Path) -> None:
    installed = {"mlflow": "3.1.0", "mlflow-skinny": "3.1.0", "numpy": "2.0.0", "flask": "3.0.0"}
    write_lock(tmp_path, {"scikit-learn": "1.5.0", "numpy": "2.0.0"}, installed)
    assert (tmp_path / LOCK_FILE).read_text() == "mlflow==3.1.0\nnumpy==2.0.0\nscikit-learn==1.5.0\n"
    assert lock_lines({}, {"mlflow-skinny": "3.2.0"}) == ["mlflow-skinny==3.2.0"]


def test_the_hook_adds_pyfunc_imports_and_the_flavor_defaults_the_lock_lacks(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE).write_text("mlflow==3.1.0\nnumpy==1.26.4\nscikit-learn==1.5.0\n")
    locked = hook.locked_requirements(str(tmp_path))
    assert locked is not None
    assert "numpy==1.26.4" in locked  # the lock's own version, not the one this interpreter has
    assert any(line.startswith("pandas==") for line in locked)
    merged = hook.model_requirements(locked, ["scikit-learn==9.9", "cloudpickle==3.0.0"])
    assert "scikit-learn==1.5.0" in merged and "scikit-learn==9.9" not in merged
    assert "cloudpickle==3.0.0" in merged
    assert hook.locked_requirements(str(tmp_path / "no-such-env")) is None


# ---- through the service ---------------------------------------------------------------------------


def logged_requirements(client: TestClient, body: dict[str, Any], tmp_path: Path) -> tuple[list[str], Path]:
    response = client.post("/mlops/deploy", json=body)
    answer = response.json()
    assert answer.get("status") == "registered", answer
    services = client.app.state.services  # type: ignore[attr-defined]
    model_dir = services.mlflow.download_version(body["model_name"], answer["model_version"], tmp_path / "model")
    lines = (Path(model_dir) / "requirements.txt").read_text().split()
    env = services.environments.ensure(body["requirements"], embedded_store=True)
    return lines, env.path


@pytest.fixture
def service(make_client: Any) -> TestClient:
    client: TestClient = make_client()
    return client


def test_a_model_is_logged_with_the_environments_exact_versions(service: TestClient, tmp_path: Path) -> None:
    lines, venv = logged_requirements(service, example_request("locked-rf"), tmp_path)
    locked = (venv / LOCK_FILE).read_text().split()
    # Inference would list only what loading the model imported (no joblib, no threadpoolctl).
    assert set(locked) <= set(lines)
    assert any(line.startswith("threadpoolctl==") for line in lines)
    extra = {line.split("==")[0] for line in set(lines) - set(locked)}
    assert extra <= {"pandas", "cloudpickle"}, lines


def test_requirements_a_script_chooses_are_kept(service: TestClient, tmp_path: Path) -> None:
    body = example_request("own-requirements-rf", script_content=script(RANDOM_FOREST_WITH_OWN_REQUIREMENTS))
    lines, _ = logged_requirements(service, body, tmp_path)
    assert "chosen-by-script==1.0" in lines
    assert not any(line.startswith(("threadpoolctl", "joblib")) for line in lines), lines
