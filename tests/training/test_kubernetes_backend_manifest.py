"""The training Job as rendered (no cluster): settings reach the pod spec, every value is escaped, the
object passes the Kubernetes schema, resources are bounded, and the start-up rule refuses the
embedded MLflow store with the kubernetes backend."""

from __future__ import annotations

import base64

import pytest

from control_api.errors import InvalidRequestError
from control_api.settings import KubernetesTrainingSettings, Settings
from control_api.training.backends.base import TrainingRequest, TrainingResources
from control_api.training.backends.job_manifest import (
    bound_resources,
    job_name,
    render_env_secret,
    render_job,
    render_script_config_map,
    secret_name,
)
from control_api.training.backends.validation import validate_training_backend
from tests.simulator.contracts import kubernetes_errors

TRICKY = 'print("a: b")\n# {{ not a template }}\nx = "\\n\'"\n'


def settings(**overrides: object) -> KubernetesTrainingSettings:
    return KubernetesTrainingSettings(**overrides)  # type: ignore[arg-type]


def rendered(training: KubernetesTrainingSettings, **resources: object) -> dict:
    request = TrainingRequest(
        deployment_id="0123abcd",
        image="registry.example/mlops/training@sha256:" + "0" * 64,
        script=TRICKY,
        env={"MLFLOW_TRACKING_URI": "https://mlflow.example", "MLFLOW_RUN_ID": "r1", "ODD": 'a"b: {c}'},
        resources=TrainingResources(**resources),  # type: ignore[arg-type]
    )
    bounded = bound_resources(request.resources, training, default_timeout_seconds=1800)
    return render_job(request, training, bounded, work_bytes=2**30)


def test_the_job_carries_the_settings_and_passes_the_schema() -> None:
    training = settings(
        namespace="ml-train",
        node_selector={"pool": "gpu", "kubernetes.io/arch": "amd64"},
        tolerations=[
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "spot", "operator": "Equal", "value": "true", "effect": "NoExecute", "tolerationSeconds": 30},
        ],
        kueue_queue="team-a",
        image_pull_secrets=["regcred"],
        ttl_seconds_after_finished=120,
    )
    job = rendered(training, cpu="2", memory="4Gi", gpu=1, timeout_seconds=900)
    assert kubernetes_errors(job) == []
    assert job["metadata"]["namespace"] == "ml-train"
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["metadata"]["labels"]["mlops.io/deployment-id"] == "0123abcd"
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (0, 900, 120)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["nodeSelector"] == {"pool": "gpu", "kubernetes.io/arch": "amd64"}
    assert pod["tolerations"][1] == {
        "key": "spot",
        "operator": "Equal",
        "value": "true",
        "effect": "NoExecute",
        "tolerationSeconds": 30,
    }
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["ODD"] == 'a"b: {c}' and env["MLFLOW_RUN_ID"] == "r1"


def test_defaults_fill_what_the_request_leaves_out() -> None:
    job = rendered(settings(default_cpu="1", default_memory="2Gi"))
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert job["spec"]["activeDeadlineSeconds"] == 1800
    assert "nodeSelector" not in job["spec"]["template"]["spec"]
    assert "kueue.x-k8s.io/queue-name" not in job["metadata"]["labels"]


def test_the_script_config_map_keeps_the_script_byte_for_byte_and_is_owned_by_the_job() -> None:
    request = TrainingRequest(deployment_id="dep", image="img:1", script=TRICKY)
    config_map = render_script_config_map(request, "ml-train", "uid-1")
    assert config_map["data"]["train.py"] == TRICKY
    assert config_map["metadata"]["ownerReferences"][0] == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": job_name("dep"),
        "uid": "uid-1",
    }
    assert kubernetes_errors(config_map) == []


def test_job_names_are_dns_labels_short_enough_for_their_pods() -> None:
    long_id = "Deployment_" + "x" * 80
    name = job_name(long_id)
    assert len(name) <= 52 and name == name.lower()
    assert job_name("a") != job_name("b")


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        ({"cpu": "9"}, "training.cpu"),
        ({"cpu": "lots"}, "training.cpu"),
        ({"memory": "64Gi"}, "training.memory"),
        ({"gpu": 2}, "training.gpu"),
        ({"timeout_seconds": 10**6}, "training.timeout_seconds"),
    ],
)
def test_resources_beyond_the_bounds_are_refused_naming_the_field(resources: dict, field: str) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        bound_resources(TrainingResources(**resources), settings(), default_timeout_seconds=1800)
    assert [problem["field"] for problem in refused.value.details] == [field]


def test_a_deployment_id_that_cannot_be_a_label_value_is_refused() -> None:
    with pytest.raises(InvalidRequestError):
        rendered_request = TrainingRequest(deployment_id="bad id!", image="img:1", script="")
        render_job(
            rendered_request,
            settings(),
            bound_resources(rendered_request.resources, settings(), default_timeout_seconds=60),
            work_bytes=2**20,
        )


@pytest.mark.parametrize(
    ("tracking_uri", "refused"),
    [
        (None, "embedded SQLite"),
        ("sqlite:////data/mlflow.db", "remote MLflow tracking server"),
        ("file:///data/mlruns", "remote MLflow tracking server"),
        ("http://mlflow.mlops.svc:5000", None),
        ("https://mlflow.example", None),
    ],
)
def test_the_kubernetes_backend_needs_a_remote_mlflow_server(tracking_uri: str | None, refused: str | None) -> None:
    configured = Settings.model_validate(
        {"training": {"backend": "kubernetes"}, "mlflow": {"tracking_uri": tracking_uri}}
    )
    problems = validate_training_backend(configured)
    if refused is None:
        assert problems == []
    else:
        assert len(problems) == 1 and refused in problems[0]
        assert "MLOPS_MLFLOW__TRACKING_URI" in problems[0]


def test_the_local_backend_has_no_such_rule() -> None:
    assert validate_training_backend(Settings.model_validate({"mlflow": {"tracking_uri": None}})) == []


def test_the_backend_is_chosen_by_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_TRAINING__BACKEND", "kubernetes")
    monkeypatch.setenv("MLOPS_TRAINING__KUBERNETES__NAMESPACE", "ml-train")
    monkeypatch.setenv("MLOPS_TRAINING__KUBERNETES__NODE_SELECTOR", '{"pool": "gpu"}')
    loaded = Settings()
    assert loaded.training.backend == "kubernetes"
    assert loaded.training.kubernetes.namespace == "ml-train"
    assert loaded.training.kubernetes.node_selector == {"pool": "gpu"}


def test_credentials_reach_the_pod_through_a_secret_not_the_job() -> None:
    secret_values = {"MLFLOW_TRACKING_URI": "https://user:s3cret@mlflow.example", "API_KEY": 'k"ey: {x}'}
    request = TrainingRequest(
        deployment_id="0123abcd",
        image="registry.example/mlops/training@sha256:" + "0" * 64,
        script=TRICKY,
        env={"MLFLOW_RUN_ID": "r1"},
        secret_env=secret_values,
    )
    training = settings(namespace="ml-train")
    job = render_job(
        request, training, bound_resources(request.resources, training, default_timeout_seconds=60), work_bytes=2**30
    )
    assert kubernetes_errors(job) == []
    assert "s3cret" not in str(job)
    env = {item["name"]: item for item in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MLFLOW_RUN_ID"]["value"] == "r1"
    for name in secret_values:
        assert env[name] == {
            "name": name,
            "valueFrom": {"secretKeyRef": {"name": secret_name("0123abcd"), "key": name}},
        }

    secret = render_env_secret(request, "ml-train", job_uid="uid-1")
    assert kubernetes_errors(secret) == []
    assert secret["metadata"]["name"] == secret_name("0123abcd") and secret["metadata"]["namespace"] == "ml-train"
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": job_name("0123abcd"), "uid": "uid-1"}
    ]
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded == secret_values
