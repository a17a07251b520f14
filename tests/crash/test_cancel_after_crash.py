"""A cancel recorded in the journal while no service runs the deploy (it was SIGKILLed mid-training,
or another replica took the request) is finished by the restarted service: the training left
behind (if any) is killed, its run closed, and the deploy ends ``cancelled``."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from control_api.journal.store import Journal
from tests.support.control import b64
from tests.support.processes import live_members
from tests.support.service_process import ServiceProcess

SLEEPING_SCRIPT = 'import time\nprint("started", flush=True)\ntime.sleep(900)\n'


def test_a_cancel_requested_before_a_crash_completes_after_the_restart(tmp_path, venv_cache):
    data = tmp_path / "data"
    env = {
        "MLOPS_DATA_DIR": str(data),
        "MLOPS_TARGET__KIND": "none",
        "MLOPS_TRAINING__VENV_CACHE_DIR": str(venv_cache),
    }
    request = {
        "script_content": b64(SLEEPING_SCRIPT),
        "script_name": "train.py",
        "model_name": "cancel-crash",
        "requirements": ["scikit-learn"],
    }
    service = ServiceProcess(env, tmp_path / "service.log").start()
    journal = Journal(f"sqlite:///{data / 'journal.db'}")
    try:
        deployment_id = service.post("/mlops/deploy", params={"wait": "false"}, json=request).json()["deployment_id"]
        service.wait_for(
            deployment_id,
            lambda b: b["status"] == "training" and journal.get(deployment_id).step("train").outputs.get("train_pgid"),
        )
        outputs = journal.get(deployment_id).step("train").outputs
        pgid, run_id = int(outputs["train_pgid"]), outputs["run_id"]
        service.kill()  # the MLflow run stays RUNNING; the sandboxed training dies with its parent

        record, asked = journal.request_cancel(deployment_id, "operator")
        assert asked and record.status == "cancelling"

        service = ServiceProcess(env, tmp_path / "service.log").start()
        final = service.wait_for(deployment_id, lambda b: b["status"] not in ("cancelling", "training"))
        assert final["status"] == "cancelled", final
        assert final["error"]["details"] == {"cancelled_by": "operator", "step": "train"}
        assert live_members(pgid) == []
        mlflow = MlflowClient(tracking_uri=f"sqlite:///{data / 'mlflow' / 'mlflow.db'}")
        run = mlflow.get_run(run_id)
        assert run.info.status == "KILLED"
        assert run.data.tags["mlops.cancelled"] == "true"
        assert mlflow.search_model_versions("name = 'cancel-crash'") == []
    finally:
        journal.close()
        service.stop()
