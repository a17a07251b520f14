"""The control service runs with its journal on PostgreSQL: status reports it healthy and the
deployments API reads what another replica wrote there."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient

from control_api.app import create_app
from control_api.journal.store import DeploymentStatus, Journal, StepStatus
from control_api.settings import Settings


def write_history_as_another_replica(url: str) -> tuple[str, str]:
    """One deployed and one failed deployment, both final so that start-up resumes nothing."""
    replica = Journal(url)
    try:
        deployed = replica.create(
            kind="deploy",
            model_name="iris",
            namespace="models",
            request={"model_name": "iris"},
            step_names=["train", "register", "wait"],
            requested_by="alice",
        )
        for name, outputs in (
            ("train", {"run_id": "run-1"}),
            ("register", {"model_version": "3"}),
            ("wait", {"deployment_url": "http://127.0.0.9:8080"}),
        ):
            replica.step_started(deployed.id, name)
            replica.step_finished(deployed.id, name, StepStatus.SUCCEEDED, outputs=outputs)
        replica.set_status(deployed.id, DeploymentStatus.DEPLOYED, finished=True)

        failed = replica.create(
            kind="deploy",
            model_name="wine",
            namespace="models",
            request={"model_name": "wine"},
            step_names=["train"],
            requested_by="bob",
        )
        replica.step_started(failed.id, "train")
        replica.step_finished(failed.id, "train", StepStatus.FAILED, message="script exited 1")
        replica.set_status(failed.id, DeploymentStatus.FAILED, error={"code": "training_failed"}, finished=True)
        return deployed.id, failed.id
    finally:
        replica.close()


def test_control_service_reports_and_lists_a_postgresql_journal(postgres_url, tmp_path):
    deployed_id, failed_id = write_history_as_another_replica(postgres_url)
    settings = Settings(journal={"url": postgres_url}, target={"kind": "none"}, data_dir=tmp_path / "data")

    with TestClient(create_app(settings)) as client:
        status = client.get("/mlops/status")
        assert status.status_code in (200, 503), status.text  # 503 only if some other component is down
        journal_component = status.json()["components"]["journal"]
        assert journal_component["status"] == "healthy", journal_component

        page = client.get("/mlops/deployments")
        assert page.status_code == 200, page.text
        body = page.json()
        assert body["total"] == 2
        assert [item["deployment_id"] for item in body["items"]] == [failed_id, deployed_id]

        iris = client.get("/mlops/deployments", params={"model": "iris"}).json()
        assert [item["deployment_id"] for item in iris["items"]] == [deployed_id]
        item = iris["items"][0]
        assert (item["status"], item["model_version"], item["run_id"]) == ("deployed", "3", "run-1")
        assert item["inference_url"] == "http://127.0.0.9:8080/predict"
        assert [step["status"] for step in item["steps"]] == ["succeeded"] * 3
        assert datetime.fromisoformat(item["created_at"]).utcoffset() == timedelta(0)

        failed = client.get("/mlops/deployments", params={"status": "failed", "limit": 1, "offset": 0}).json()
        assert (failed["total"], [i["deployment_id"] for i in failed["items"]]) == (1, [failed_id])
        assert failed["items"][0]["error"] == {"code": "training_failed"}

        second_page = client.get("/mlops/deployments", params={"limit": 1, "offset": 1}).json()
        assert [i["deployment_id"] for i in second_page["items"]] == [deployed_id]

        one = client.get(f"/mlops/deployments/{failed_id}")
        assert one.status_code == 200
        assert one.json()["steps"][0]["message"] == "script exited 1"
        assert client.get("/mlops/deployments/not-there").status_code == 404

    # The service used PostgreSQL, not its SQLite default under the data dir.
    assert not (tmp_path / "data" / "journal.db").exists()
