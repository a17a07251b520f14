"""Kill the service (SIGKILL) in the middle of a deploy, start it again: the deploy completes once."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from control_api.journal.store import Journal
from tests.support.control import example_request
from tests.support.service_process import ServiceProcess

FINAL = ("registered", "deployed", "failed", "timed_out")


def hold_write_lock(database: Path) -> sqlite3.Connection:
    """Take SQLite's write lock on ``database`` and keep it until the connection is closed: readers
    go on, every writer waits (as behind a slow or busy registry database)."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    return connection


@pytest.mark.parametrize("kill_at", ["training", "registering"])
def test_sigkill_mid_deploy_then_restart_completes_without_duplicates(tmp_path, venv_cache, kill_at):
    data = tmp_path / "data"
    tracking_uri = f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"
    # The registry has its own database, so the test can hold registration up without holding up
    # the training run's writes.
    registry_db = data / "mlflow" / "registry.db"
    registry_uri = f"sqlite:///{registry_db}"
    env = {
        "MLOPS_DATA_DIR": str(data),
        "MLOPS_MLFLOW__TRACKING_URI": tracking_uri,
        "MLOPS_MLFLOW__REGISTRY_URI": registry_uri,
        "MLOPS_TARGET__KIND": "none",
        "MLOPS_TRAINING__VENV_CACHE_DIR": str(venv_cache),
    }
    registry_db.parent.mkdir(parents=True)
    mlflow = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    mlflow.search_registered_models()  # creates the registry's schema before anyone locks it
    lock = hold_write_lock(registry_db) if kill_at == "registering" else None
    service = ServiceProcess(env, tmp_path / "service.log").start()
    try:
        deployment_id = service.post("/mlops/deploy", params={"wait": "false"}, json=example_request("crashy")).json()[
            "deployment_id"
        ]
        if kill_at == "training":
            # The MLflow run exists and the script is running: the worst moment to die.
            service.wait_for(deployment_id, lambda b: b["status"] == "training" and b["run_id"])
        else:
            # Training writes to the tracking database and finishes; registration then waits for the
            # registry's write lock, so the register step is under way and cannot have finished.
            service.wait_for(
                deployment_id, lambda b: b["status"] == "registering" and b["steps"][1]["status"] == "running"
            )
        before = service.get(f"/mlops/deployments/{deployment_id}").json()
        service.kill()

        if lock is not None:
            journal = Journal(f"sqlite:///{data / 'journal.db'}")
            try:
                steps = {s.name: s for s in journal.get(deployment_id).steps}
            finally:
                journal.engine.dispose()
            assert steps["train"].status == "succeeded", steps
            assert (steps["register"].status, steps["register"].finished_at) == ("running", None), steps
            assert steps["register"].started_at is not None, steps
            assert lock.execute("SELECT count(*) FROM model_versions").fetchone() == (0,)
            lock.execute("ROLLBACK")
            lock.close()
            lock = None

        service = ServiceProcess(env, tmp_path / "service.log").start()
        final = service.wait_for(deployment_id, lambda b: b["status"] in FINAL)
        assert final["status"] == "registered", final
        assert final["model_version"] == "1"
        versions = mlflow.search_model_versions("name = 'crashy'")
        assert [str(v.version) for v in versions] == ["1"]
        assert versions[0].run_id == final["run_id"]
        if kill_at == "training":
            interrupted = before["run_id"]
            assert mlflow.get_run(interrupted).info.status in ("KILLED", "FINISHED")
            assert final["steps"][0]["attempts"] >= 2
        else:
            assert final["run_id"] == before["run_id"]
            assert final["steps"][0]["attempts"] == 1
            assert final["steps"][1]["attempts"] >= 2  # the killed registration, then the one that finished
    finally:
        if lock is not None:
            lock.close()
        service.stop()
