"""POST /mlops/deploy really trains a script under MLflow and registers its model (target ``none``)."""

from __future__ import annotations

import time

import pytest
from mlflow.tracking import MlflowClient

from tests.support.control import assert_error_format, example_request, script


def _mlflow(client) -> MlflowClient:
    return MlflowClient(
        tracking_uri=client.app.state.services.settings.mlflow_tracking_uri(),
        registry_uri=client.app.state.services.settings.mlflow_tracking_uri(),
    )


def _wait_final(client, deployment_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    seen = set()
    while time.monotonic() < deadline:
        body = client.get(f"/mlops/deployments/{deployment_id}").json()
        seen.add(body["status"])
        if body["status"] in ("registered", "deployed", "failed", "timed_out"):
            body["_seen"] = seen
            return body
        time.sleep(0.2)
    raise AssertionError(f"deployment {deployment_id} did not finish; statuses seen: {seen}")


def test_deploy_trains_and_registers_two_versions(client):
    first = client.post("/mlops/deploy", json=example_request(tags={"team": "search"}))
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "registered", body
    assert body["model_version"] == "1"
    assert body["deployment_id"] == body["job_id"]
    assert body["deployment_time_seconds"] == body["duration_seconds"] > 0
    assert [s["name"] for s in body["steps"]] == ["train", "register"]
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 and s["started_at"] for s in body["steps"])
    for later_field in ("image_uri", "ecr_image", "inference_url", "deployment_url", "external_ip", "commit"):
        assert later_field in body and body[later_field] is None
    assert set(body["endpoints"]) == {"predict", "health", "metadata", "v2_infer", "v2_model", "v2_ready"}

    mlflow = _mlflow(client)
    run = mlflow.get_run(body["run_id"])
    assert run.data.params["n_estimators"] == "50"
    assert 0.8 <= run.data.metrics["accuracy"] <= 1.0
    assert run.data.tags["team"] == "search"
    assert run.data.tags["mlops.deployment_id"] == body["deployment_id"]
    assert run.info.status == "FINISHED"
    artifacts = [a.path for a in mlflow.list_artifacts(body["run_id"], "logs")]
    assert any(p.endswith("stdout.log") for p in artifacts), artifacts
    version = mlflow.get_model_version("iris-rf", "1")
    assert version.run_id == body["run_id"]
    assert version.tags["mlops.deployment_id"] == body["deployment_id"]

    second = client.post("/mlops/deploy", json=example_request()).json()
    assert second["status"] == "registered" and second["model_version"] == "2"

    detail = client.get("/mlops/models/iris-rf").json()
    assert [v["version"] for v in detail["versions"]] == ["2", "1"]
    assert detail["latest_version"] == "2"
    v1 = detail["versions"][1]
    assert v1["run_id"] == body["run_id"] and v1["params"]["n_estimators"] == "50" and "accuracy" in v1["metrics"]
    assert v1["creation_timestamp"].endswith("+00:00")
    models = client.get("/mlops/models").json()["models"]
    assert [(m["name"], m["latest_version"]) for m in models] == [("iris-rf", "2")]
    assert models[0]["creation_timestamp"] and models[0]["last_updated_timestamp"]

    # The step that registers is idempotent: re-running it for the same run adds no version.
    from control_api.pipeline.step import StepContext
    from control_api.pipeline.steps.register import RegisterStep

    services = client.app.state.services
    record = services.journal.get(second["deployment_id"])
    ctx = StepContext(record, dict(record.outputs), services.settings, services.journal, "register")
    assert RegisterStep(mlflow=lambda: services.mlflow).run(ctx).outputs["model_version"] == "2"
    assert len(mlflow.search_model_versions("name = 'iris-rf'")) == 2


def test_async_deploy_answers_202_and_polling_reaches_the_end(client):
    response = client.post("/mlops/deploy", params={"wait": "false"}, json=example_request("iris-async"))
    assert response.status_code == 202, response.text
    deployment_id = response.json()["deployment_id"]
    assert response.headers["location"] == f"/mlops/deployments/{deployment_id}"
    final = _wait_final(client, deployment_id)
    assert final["status"] == "registered" and final["model_version"] == "1"
    assert "training" in final["_seen"] or "registering" in final["_seen"]

    preferred = client.post("/mlops/deploy", headers={"Prefer": "respond-async"}, json=example_request("iris-async"))
    assert preferred.status_code == 202
    assert _wait_final(client, preferred.json()["deployment_id"])["model_version"] == "2"


def test_sync_deploy_answers_202_after_the_maximum_wait(make_client):
    client = make_client(api={"max_wait_seconds": 0.5})
    response = client.post("/mlops/deploy", json=example_request("iris-slow"))
    assert response.status_code == 202
    assert response.json()["status"] in ("pending", "training", "registering")
    assert _wait_final(client, response.json()["deployment_id"])["status"] == "registered"


def test_second_deploy_of_a_running_model_is_409(client):
    first = client.post("/mlops/deploy", params={"wait": "false"}, json=example_request("iris-busy"))
    second = client.post("/mlops/deploy", params={"wait": "false"}, json=example_request("iris-busy"))
    assert second.status_code == 409
    assert second.json()["error"]["details"]["deployment_id"] == first.json()["deployment_id"]
    _wait_final(client, first.json()["deployment_id"])


def test_retry_while_a_newer_deploy_of_the_model_runs_is_409_and_changes_nothing(client):
    failed = client.post(
        "/mlops/deploy", json=example_request("iris-retry", requirements=["no-such-package-mlops-test==0.0.1"])
    ).json()
    assert failed["status"] == "failed", failed
    running = client.post("/mlops/deploy", params={"wait": "false"}, json=example_request("iris-retry")).json()

    refused = client.post(f"/mlops/deployments/{failed['deployment_id']}/retry")

    error = assert_error_format(refused, 409, "deploy_in_progress")
    assert error["details"]["deployment_id"] == running["deployment_id"]
    after = client.get(f"/mlops/deployments/{failed['deployment_id']}").json()
    assert (after["status"], after["error"], after["steps"]) == (failed["status"], failed["error"], failed["steps"])
    _wait_final(client, running["deployment_id"])


FAILING = {
    "raises": (
        """
        import mlflow
        with mlflow.start_run():
            mlflow.log_param("alpha", 1)
            raise ValueError("bad training data: column 'price' is empty")
        """,
        [],
        "training_failed",
        ["exited with code 1", "ValueError: bad training data: column 'price' is empty"],
    ),
    "no_model": (
        """
        import mlflow
        with mlflow.start_run():
            mlflow.log_metric("loss", 0.1)
        """,
        [],
        "no_model_logged",
        ["logged no model"],
    ),
    "two_models": (
        """
        import mlflow
        from sklearn.linear_model import LinearRegression
        m = LinearRegression().fit([[0], [1]], [0, 1])
        with mlflow.start_run():
            mlflow.sklearn.log_model(m, name="a")
            mlflow.sklearn.log_model(m, name="b")
        """,
        ["scikit-learn"],
        "several_models_logged",
        ["logged 2 models (a, b)"],
    ),
    "bad_requirement": (
        "print('never runs')\n",
        ["this-package-does-not-exist-mlops-test==9.9.9"],
        "requirements_install_failed",
        ["this-package-does-not-exist-mlops-test"],
    ),
}


@pytest.mark.parametrize("case", sorted(FAILING))
def test_failures_have_a_clear_message_and_step(client, case):
    body_text, requirements, code, fragments = FAILING[case]
    response = client.post(
        "/mlops/deploy",
        json={
            "script_content": script(body_text),
            "model_name": f"fail-{case.replace('_', '-')}",
            "requirements": requirements,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "failed"
    assert body["error"]["step"] == "train"
    assert body["error"]["code"] == code
    for fragment in fragments:
        assert fragment in body["error"]["message"], body["error"]["message"]
    train = body["steps"][0]
    assert train["status"] == "failed" and train["message"] == body["error"]["message"]
    assert body["steps"][1]["status"] == "pending"
    assert client.get(f"/mlops/models/fail-{case.replace('_', '-')}").status_code == 404


def test_timeout_kills_the_unsandboxed_script_and_its_children(make_client, tmp_path):
    """The fallback path (no sandbox: not root, or namespaces refused) still kills the script's whole
    process group at the timeout. The sandboxed path, where a grandchild cannot even see this host
    folder, is covered by tests/security/test_training_sandbox.py."""
    marker = tmp_path / "child-alive"
    client = make_client(training={"timeout_seconds": 3, "sandbox": "off"})
    body = client.post(
        "/mlops/deploy",
        json={
            "model_name": "sleepy",
            "script_content": script(
                f"""
                import subprocess, sys, time
                # a grandchild that would outlive a kill of the script's own pid
                toucher = (
                    "import time, pathlib\\nwhile True:\\n"
                    "    pathlib.Path({str(marker)!r}).touch(); time.sleep(0.2)"
                )
                subprocess.Popen([sys.executable, "-c", toucher], start_new_session=False)
                time.sleep(600)
                """
            ),
        },
    ).json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "training_timeout"
    assert "within 3 s" in body["error"]["message"]
    assert marker.exists(), "the grandchild never ran, so this test proves nothing"
    time.sleep(1)
    marker.unlink(missing_ok=True)
    time.sleep(1)
    assert not marker.exists(), "a child of the timed-out script is still running"


def test_script_that_sets_its_own_experiment_and_tracking_uri(client):
    body = client.post(
        "/mlops/deploy",
        json={
            "model_name": "own-experiment",
            "experiment_name": "team-exp",
            "requirements": ["scikit-learn"],
            "environment_vars": {"MY_SETTING": "42"},
            "script_content": script(
                """
                import os
                import mlflow
                from sklearn.linear_model import LogisticRegression
                from sklearn.datasets import load_iris
                mlflow.set_tracking_uri("http://localhost:5000")
                mlflow.set_experiment("my-own-experiment")
                X, y = load_iris(return_X_y=True)
                with mlflow.start_run():
                    mlflow.log_param("my_setting", os.environ["MY_SETTING"])
                    mlflow.log_param("aws_visible", "AWS_SECRET_ACCESS_KEY" in os.environ)
                    mlflow.sklearn.log_model(LogisticRegression(max_iter=300).fit(X, y), "model")
                """
            ),
        },
    ).json()
    assert body["status"] == "registered", body
    run = _mlflow(client).get_run(body["run_id"])
    assert run.data.params == {"my_setting": "42", "aws_visible": "False"}
    assert run.data.tags["mlops.script_experiment"] == "my-own-experiment"
    assert _mlflow(client).get_experiment(run.info.experiment_id).name == "team-exp"


def test_pinned_older_release_is_honoured(client):
    body = client.post(
        "/mlops/deploy",
        json={
            "model_name": "old-sklearn",
            "requirements": ["scikit-learn==1.5.2"],
            "script_content": script(
                """
                import mlflow, sklearn
                from sklearn.tree import DecisionTreeClassifier
                assert sklearn.__version__ == "1.5.2", sklearn.__version__
                with mlflow.start_run():
                    mlflow.log_param("sklearn_version", sklearn.__version__)
                    mlflow.sklearn.log_model(DecisionTreeClassifier().fit([[0], [1]], [0, 1]), "model")
                """
            ),
        },
    ).json()
    assert body["status"] == "registered", body
    assert _mlflow(client).get_run(body["run_id"]).data.params["sklearn_version"] == "1.5.2"


def test_a_pin_that_cannot_work_says_why(client):
    body = client.post(
        "/mlops/deploy",
        json={"model_name": "old-mlflow", "requirements": ["mlflow==2.9.2"], "script_content": script("print(1)\n")},
    ).json()
    assert body["status"] == "failed"
    assert body["error"]["code"] == "incompatible_requirement"
    assert "mlflow==2.9.2" in body["error"]["message"] and "tracking server" in body["error"]["message"]


def test_file_size_and_memory_limits_fail_clearly(make_client):
    client = make_client(training={"max_file_bytes": 1024 * 1024, "max_memory_bytes": 2 * 2**30})
    huge = client.post(
        "/mlops/deploy",
        json={
            "model_name": "huge-file",
            "script_content": script(
                """
        with open("big.bin", "wb") as f:
            f.write(b"x" * (8 * 1024 * 1024))
        """
            ),
        },
    ).json()
    assert huge["status"] == "failed" and huge["error"]["code"] == "training_failed"
    assert "file size limit" in huge["error"]["message"] or "File too large" in huge["error"]["message"]
    hog = client.post(
        "/mlops/deploy",
        json={
            "model_name": "memory-hog",
            "script_content": script(
                """
        hog = bytearray(4 * 2**30)
        """
            ),
        },
    ).json()
    assert hog["status"] == "failed" and "MemoryError" in hog["error"]["message"]
    assert client.get("/health").status_code == 200


def test_cpu_time_and_open_file_limits_fail_clearly(make_client):
    client = make_client(training={"max_open_files": 64})
    # RLIMIT_CPU is set well above what the wall-clock timeout allows; a script may only lower it, and
    # does, so the deploy fails the way a CPU-bound script under a lower limit would.
    spinner = client.post(
        "/mlops/deploy",
        json={
            "model_name": "cpu-spinner",
            "script_content": script(
                """
        import resource
        resource.setrlimit(resource.RLIMIT_CPU, (1, resource.getrlimit(resource.RLIMIT_CPU)[1]))
        while True:
            pass
        """
            ),
        },
    ).json()
    assert spinner["status"] == "failed" and spinner["error"]["code"] == "training_failed", spinner
    assert "SIGXCPU" in spinner["error"]["message"] and "CPU time limit" in spinner["error"]["message"]
    assert "CPU time limit" in spinner["error"]["details"]["limit"]
    opener = client.post(
        "/mlops/deploy",
        json={
            "model_name": "file-opener",
            "script_content": script(
                """
        handles = [open(__file__) for _ in range(200)]
        """
            ),
        },
    ).json()
    assert opener["status"] == "failed" and opener["error"]["code"] == "training_failed", opener
    assert "open file limit" in opener["error"]["message"] and "at most 64 open files" in opener["error"]["message"]
    assert "MLOPS_TRAINING__MAX_OPEN_FILES" in opener["error"]["details"]["limit"]
