"""A training script must touch only its own MLflow run, never a host folder through the root service.

Three attacks a sandboxed script could mount while it wrote the embedded MLflow store directly:

* it edits its experiment's ``artifact_location`` to a folder outside the store; the next deploy in
  that experiment made the root service chgrp/chmod that folder and bind-mount it into the sandbox;
* under ``experiment_name: "."`` (whose artifact folder was the artifact root itself) it swaps another
  experiment's folder for a symlink to a folder outside the store, with the same result;
* it edits its run's ``artifact_uri``; the root service then wrote the script's logs there.

Each test keeps a canary folder outside the store and checks that it is exactly as it was (mode,
owner, group, contents of every entry) after the attack and a following deploy. The attacking script
is given the store's paths in its environment, so it fails only if the store is out of its reach.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.support.control import assert_error_format, script
from tests.support.sandbox import require_sandbox

ECHO_MODEL = """
import mlflow

class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input

with mlflow.start_run():
    mlflow.log_param("kind", "echo")
    mlflow.pyfunc.log_model(name="model", python_model=Echo(), pip_requirements=["mlflow"])
"""

# Opens the store's SQLite database at the path the test hands over and runs one UPDATE. Prints what
# happened so a failure of the test shows how far the attack got.
EDIT_STORE = """
import os, sqlite3
try:
    db = sqlite3.connect(os.environ["ATTACK_DB"], timeout=30)
    changed = db.execute(STATEMENT, PARAMETERS).rowcount
    db.commit()
    print("STORE EDITED:", changed, "rows", flush=True)
except Exception as exc:
    print("store out of reach:", type(exc).__name__, exc, flush=True)
"""


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry under ``folder`` (itself included): type and permission bits, owner, group, content."""
    entries: dict[str, tuple] = {}
    for path in [folder, *sorted(folder.rglob("*"))]:
        st = os.lstat(path)
        content = (
            path.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
        )
        entries[str(path.relative_to(folder))] = (st.st_mode, st.st_uid, st.st_gid, content)
    return entries


@pytest.fixture
def canary(tmp_path) -> Path:
    folder = tmp_path / "canary"
    folder.mkdir(mode=0o750)
    (folder / "secret.txt").write_text("canary: nobody may read or change this\n")
    (folder / "secret.txt").chmod(0o600)
    (folder / "inner").mkdir(mode=0o700)
    os.chmod(folder, 0o750)
    return folder


@pytest.fixture
def service(make_client):
    require_sandbox()
    return make_client(training={"sandbox": "required"})


def deploy(client, model_name: str, body: str, **extra) -> dict:
    response = client.post("/mlops/deploy", json={"model_name": model_name, "script_content": script(body), **extra})
    assert response.status_code == 200, response.text
    return response.json()


def script_output(client, deployment: dict) -> str:
    """What the attacking script printed (and the step log around it), to show how far it got."""
    events = client.app.state.services.journal.events(deployment["deployment_id"])
    lines = [e["data"]["line"] for e in events if e["type"] == "log" and not e["data"]["line"].startswith(" + ")]
    return "\n".join([*lines, f"deployment: {deployment['status']} {deployment.get('error')}"])


def store_paths(client) -> tuple[Path, Path]:
    settings = client.app.state.services.settings
    return settings.data_path / "mlflow" / "mlflow.db", settings.data_path / "mlflow" / "artifacts"


def attack_script(statement: str, parameters: str) -> str:
    return f"import os\nSTATEMENT = {statement!r}\nPARAMETERS = {parameters}\n" + EDIT_STORE + ECHO_MODEL


def assert_attack_ran(client, deployment: dict) -> None:
    """The attack got as far as trying (a broken attack script would prove nothing)."""
    output = script_output(client, deployment)
    assert "STORE EDITED" in output or "STORE FOLDER SWAPPED" in output or "store out of reach" in output, output


def test_artifact_location_edit_does_not_open_a_host_folder(service, canary):
    database, _ = store_paths(service)
    before = snapshot(canary)
    attack = deploy(
        service,
        "victim-location",
        attack_script(
            "UPDATE experiments SET artifact_location = ? WHERE experiment_id = ?",
            f"({str(canary)!r}, os.environ['MLFLOW_EXPERIMENT_ID'])",
        ),
        environment_vars={"ATTACK_DB": str(database)},
    )
    assert_attack_ran(service, attack)
    second = deploy(service, "victim-location", ECHO_MODEL)
    assert snapshot(canary) == before, script_output(service, attack)
    assert second["status"] == "registered", second


def test_dot_experiment_symlink_swap_does_not_open_a_host_folder(service, canary):
    _database, artifacts = store_paths(service)
    before = snapshot(canary)
    first = deploy(service, "victim-swap", ECHO_MODEL)
    assert first["status"] == "registered", first
    swap = (
        """
import os
root, victim, canary = os.environ["ATTACK_ROOT"], os.environ["ATTACK_VICTIM"], os.environ["ATTACK_CANARY"]
try:
    os.rename(os.path.join(root, victim), os.path.join(root, victim + ".moved"))
    os.symlink(canary, os.path.join(root, victim))
    print("STORE FOLDER SWAPPED", flush=True)
except OSError as exc:
    print("store out of reach:", type(exc).__name__, exc, flush=True)
"""
        + ECHO_MODEL
    )
    attack_env = {"ATTACK_ROOT": str(artifacts), "ATTACK_VICTIM": "victim-swap", "ATTACK_CANARY": str(canary)}
    for experiment in (".", "attacker"):
        response = service.post(
            "/mlops/deploy",
            json={
                "model_name": "attacker",
                "experiment_name": experiment,
                "script_content": script(swap),
                "environment_vars": attack_env,
            },
        )
        assert response.status_code in (200, 422), response.text
        if response.status_code == 200:
            assert_attack_ran(service, response.json())
    second = deploy(service, "victim-swap", ECHO_MODEL)
    assert snapshot(canary) == before
    assert second["status"] == "registered", second


def test_run_artifact_uri_edit_does_not_make_the_service_write_there(service, canary):
    database, _ = store_paths(service)
    before = snapshot(canary)
    attack = deploy(
        service,
        "victim-run",
        attack_script(
            "UPDATE runs SET artifact_uri = ? WHERE run_uuid = ?", f"({str(canary)!r}, os.environ['MLFLOW_RUN_ID'])"
        ),
        environment_vars={"ATTACK_DB": str(database)},
    )
    assert_attack_ran(service, attack)
    assert snapshot(canary) == before, script_output(service, attack)


@pytest.mark.parametrize("name", [".", "..", " . ", "./..", "a/../..", "/etc"])
def test_experiment_names_that_are_paths_are_refused(client, name):
    response = client.post(
        "/mlops/deploy", json={"model_name": "named", "experiment_name": name, "script_content": script(ECHO_MODEL)}
    )
    error = assert_error_format(response, 422)
    assert "experiment_name" in str(error["details"]), error
    assert client.app.state.services.mlflow.client.get_experiment_by_name(name) is None
