"""Kill the service (SIGKILL) in the middle of a deploy, start it again: the deploy completes once."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.control.conftest import example_request
from tests.control.process import ServiceProcess

FINAL = ("registered", "deployed", "failed", "timed_out")


@pytest.mark.parametrize("kill_at", ["training", "registering"])
def test_sigkill_mid_deploy_then_restart_completes_without_duplicates(tmp_path, venv_cache, kill_at):
    env = {
        "MLOPS_DATA_DIR": str(tmp_path / "data"),
        "MLOPS_TARGET__KIND": "none",
        "MLOPS_TRAINING__VENV_CACHE_DIR": str(venv_cache),
    }
    service = ServiceProcess(env, tmp_path / "service.log").start()
    try:
        deployment_id = service.post("/mlops/deploy", params={"wait": "false"}, json=example_request("crashy")).json()["deployment_id"]
        if kill_at == "training":
            # The MLflow run exists and the script is running: the worst moment to die.
            service.wait_for(deployment_id, lambda b: b["status"] == "training" and b["run_id"])
        else:
            service.wait_for(deployment_id, lambda b: b["steps"][0]["status"] == "succeeded")
        before = service.get(f"/mlops/deployments/{deployment_id}").json()
        service.kill()

        service = ServiceProcess(env, tmp_path / "service.log").start()
        final = service.wait_for(deployment_id, lambda b: b["status"] in FINAL)
        assert final["status"] == "registered", final
        assert final["model_version"] == "1"
        mlflow = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'data' / 'mlflow' / 'mlflow.db'}", registry_uri=f"sqlite:///{tmp_path / 'data' / 'mlflow' / 'mlflow.db'}")
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
    finally:
        service.stop()
