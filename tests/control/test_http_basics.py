"""Error format, request ids, removed endpoints, platform status, probes and metrics."""

from __future__ import annotations

import pytest

from tests.support.control import assert_error_format


@pytest.mark.parametrize(
    "method,path,points_to",
    [
        ("post", "/mlops/inference", "inference_url"),
        ("post", "/mlops/training/upload", "/mlops/deploy"),
        ("get", "/mlops/training/jobs/abc123", "/mlops/deploy"),
        ("post", "/mlops/registry", "/mlops/deploy"),
    ],
)
def test_removed_endpoints_say_where_the_work_went(client, method, path, points_to):
    response = getattr(client, method)(path)
    error = assert_error_format(response, 404, "endpoint_removed")
    assert points_to in error["message"]


def test_every_response_has_a_request_id(client):
    assert client.get("/health").headers["x-request-id"]
    echoed = client.get("/health", headers={"X-Request-ID": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"


def test_unknown_deployment_is_404_in_error_format(client):
    error = assert_error_format(client.get("/mlops/deployments/doesnotexist"), 404, "deployment_not_found")
    assert "doesnotexist" in error["message"]


def test_unknown_route_and_model_are_404(client):
    assert_error_format(client.get("/mlops/nothing-here"), 404)
    assert_error_format(client.get("/mlops/models/no-such-model"), 404, "model_not_found")


def test_platform_status_healthy(client):
    # The first call also creates the embedded MLflow database (migrations), which on a loaded machine
    # can outlast the 10 s check limit; the steady state is what this test is about.
    client.get("/mlops/status")
    response = client.get("/mlops/status")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    assert {"mlflow", "journal"} <= set(body["components"])
    for component in body["components"].values():
        assert component["status"] == "healthy"
        assert component["latency_ms"] >= 0
    assert body["timestamp"].endswith("+00:00")


def test_platform_status_503_when_mlflow_is_down(make_client):
    client = make_client(mlflow={"tracking_uri": "http://127.0.0.1:9"})
    response = client.get("/mlops/status")
    assert response.status_code == 503
    components = response.json()["components"]
    assert components["mlflow"]["status"] == "unhealthy"
    assert components["mlflow"]["error"]
    assert components["journal"]["status"] == "healthy"


def test_probes_and_metrics(client):
    assert client.get("/health").json()["status"] == "healthy"
    assert client.get("/ready").status_code == 200
    client.get("/mlops/deployments")
    metrics = client.get("/metrics").text
    assert 'mlops_control_requests_total{method="GET",route="/mlops/deployments",status="200"}' in metrics


def test_deployments_list_is_paginated_and_filtered(client):
    journal = client.app.state.services.journal
    for i in range(5):
        record = journal.create(
            kind="deploy", model_name=f"m{i % 2}", namespace="default", request={}, step_names=["train"]
        )
        if i < 3:  # one operation per model at a time: each model's earlier ones have ended
            journal.set_status(record.id, "failed", finished=True)
    page = client.get("/mlops/deployments", params={"limit": 2, "offset": 1}).json()
    assert page["total"] == 5 and len(page["items"]) == 2 and page["offset"] == 1
    only_m0 = client.get("/mlops/deployments", params={"model": "m0"}).json()
    assert only_m0["total"] == 3 and {i["model_name"] for i in only_m0["items"]} == {"m0"}
    pending = client.get("/mlops/deployments", params={"status": "pending", "model": "m1"}).json()
    assert pending["total"] == 1 and pending["items"][0]["model_name"] == "m1"
    assert_error_format(client.get("/mlops/deployments", params={"limit": 0}), 422, "validation_error")
