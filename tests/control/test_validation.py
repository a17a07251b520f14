"""Bad input gets a 422 in the error format, names the field and rule, and creates nothing."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.support.control import assert_error_format, b64, example_request


def _mlflow_state(client) -> tuple[list[str], list[str]]:
    settings = client.app.state.services.settings
    mlflow = MlflowClient(tracking_uri=settings.mlflow_tracking_uri(), registry_uri=settings.mlflow_tracking_uri())
    experiments = sorted(e.name for e in mlflow.search_experiments())
    models = sorted(m.name for m in mlflow.search_registered_models())
    return experiments, models


BAD_REQUESTS = [
    ("invalid base64", {"script_content": "not base64 at all!!"}, "script_content", "base64"),
    ("empty script", {"script_content": b64("   \n")}, "script_content", "not_empty"),
    ("empty string", {"script_content": ""}, "script_content", "not_empty"),
    ("syntax error", {"script_content": b64("def broken(:\n")}, "script_content", "python_syntax"),
    ("uppercase name", {"model_name": "My_Model"}, "model_name", "dns1123_label"),
    ("64 characters", {"model_name": "a" * 64}, "model_name", "max_length_63"),
    ("path traversal", {"model_name": "../x"}, "model_name", "dns1123_label"),
    ("unknown field", {"surprise": 1}, "surprise", "extra_forbidden"),
    (
        "pip option",
        {"requirements": ["--index-url https://evil.example/simple"]},
        "requirements",
        "requirement_specifier",
    ),
    (
        "url requirement",
        {"requirements": ["pkg @ https://evil.example/pkg.whl"]},
        "requirements",
        "requirement_specifier",
    ),
    ("path requirement", {"requirements": ["./local/pkg"]}, "requirements", "requirement_specifier"),
    ("env key", {"environment_vars": {"1BAD": "x"}}, "environment_vars", "env_key"),
    ("env newline", {"environment_vars": {"GOOD": "a\nkind: Secret"}}, "environment_vars", "env_value"),
    ("too many replicas", {"deployment_config": {"replicas": 500}}, "deployment_config.replicas", "less_than_equal"),
    ("cpu quantity", {"deployment_config": {"cpu_limit": "lots"}}, "deployment_config.cpu_limit", "cpu_quantity"),
    ("memory bound", {"deployment_config": {"memory_limit": "1Ti"}}, "deployment_config.memory_limit", "memory_bounds"),
    ("namespace label", {"namespace": "Kube_System"}, "namespace", "dns1123_label"),
    ("NUL in experiment", {"experiment_name": "exp\x00"}, "experiment_name", "experiment_name"),
    ("newline in experiment", {"experiment_name": "exp\nother"}, "experiment_name", "experiment_name"),
    ("blank experiment", {"experiment_name": "  "}, "experiment_name", "experiment_name"),
    ("NUL in tag value", {"tags": {"team": "a\x00b"}}, "tags", "tag"),
    ("NUL in tag key", {"tags": {"te\x00am": "a"}}, "tags", "tag"),
    # The renderer's rules, applied by the API before anything is created.
    ("yaml document marker in env", {"environment_vars": {"A": "--- x"}}, "environment_vars", "env_value"),
    ("control character in env", {"environment_vars": {"A": "a\x07b"}}, "environment_vars", "env_value"),
    ("reserved env", {"environment_vars": {"MODEL_NAME": "x"}}, "environment_vars", "env_reserved"),
    (
        "env both plain and secret",
        {"environment_vars": {"A": "1"}, "secret_env": {"A": {"name": "s", "key": "k"}}},
        "request",
        "renderable",
    ),
    (
        "cpu finer than a millicore",
        {"deployment_config": {"cpu_limit": "0.0005"}},
        "deployment_config.cpu_limit",
        "cpu_quantity",
    ),
    (
        "autoscaling bounds",
        {"deployment_config": {"autoscaling": {"min_replicas": 5, "max_replicas": 2}}},
        "deployment_config.autoscaling",
        "autoscaling_bounds",
    ),
    (
        "autoscaling target",
        {"deployment_config": {"autoscaling": {"max_replicas": 2, "target_cpu_utilization": 0}}},
        "deployment_config.autoscaling.target_cpu_utilization",
        "greater_than_equal",
    ),
]


@pytest.mark.parametrize("case,change,field,rule", BAD_REQUESTS, ids=[c[0] for c in BAD_REQUESTS])
def test_bad_request_is_422_and_creates_nothing(client, case, change, field, rule):
    before = _mlflow_state(client)
    response = client.post("/mlops/deploy", json=example_request(**change))
    error = assert_error_format(response, 422, "validation_error")
    assert any(d["field"] == field and d["rule"] == rule for d in error["details"]), error["details"]
    assert field.split(".")[0] in error["message"]
    assert _mlflow_state(client) == before
    assert client.get("/mlops/deployments").json()["total"] == 0


def test_missing_model_name(client):
    body = example_request()
    del body["model_name"]
    error = assert_error_format(client.post("/mlops/deploy", json=body), 422, "validation_error")
    assert {"field": "model_name", "rule": "missing"} in [
        {k: d[k] for k in ("field", "rule")} for d in error["details"]
    ]
    assert client.get("/mlops/deployments").json()["total"] == 0


def test_namespace_not_on_allowlist(client):
    error = assert_error_format(client.post("/mlops/deploy", json=example_request(namespace="kube-system")), 422)
    assert error["details"][0]["field"] == "namespace"
    assert client.get("/mlops/deployments").json()["total"] == 0


def test_rollback_refuses_a_namespace_off_the_allowlist_like_deploy(make_client):
    client = make_client(target={"kind": "local"})
    deploy = assert_error_format(client.post("/mlops/deploy", json=example_request(namespace="kube-system")), 422)
    rollback = assert_error_format(
        client.post("/mlops/models/iris-rf/rollback", json={"namespace": "kube-system"}), 422
    )
    assert rollback["message"] == deploy["message"] and rollback["details"] == deploy["details"]


def test_autoscaling_reaches_the_journal(client):
    from control_api.api.schemas import DeployRequest

    request = DeployRequest(
        **example_request(deployment_config={"autoscaling": {"min_replicas": 2, "max_replicas": 6}})
    )
    assert request.to_journal("default")["deployment_config"]["autoscaling"] == {
        "min_replicas": 2,
        "max_replicas": 6,
        "target_cpu_utilization": 80,
    }


def test_body_that_is_not_json(client):
    response = client.post("/mlops/deploy", content=b"{nope", headers={"content-type": "application/json"})
    assert_error_format(response, 422, "validation_error")


def test_legacy_top_level_replicas_and_namespace_are_accepted(client):
    from control_api.api.schemas import DeployRequest

    request = DeployRequest(**example_request(replicas=3, namespace="staging"))
    assert request.to_journal("staging")["deployment_config"]["replicas"] == 3
    nested = DeployRequest(
        **example_request(deployment_config={"replicas": 2, "memory_limit": "512Mi", "cpu_limit": "500m"})
    )
    assert nested.to_journal("default")["deployment_config"] == {
        "replicas": 2,
        "memory_limit": "512Mi",
        "cpu_limit": "500m",
    }
