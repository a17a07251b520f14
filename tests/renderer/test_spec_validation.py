"""DeploymentSpec refuses what would render a broken, unsafe or leaky deployment."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from render_helpers import spec_fields

from renderer import (
    Autoscaling,
    DeploymentSpec,
    DisruptionBudget,
    RenderError,
    SecretRef,
    check_env_value,
    model_dir,
    render_model,
)

GOOD_DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("model_name", "Iris"),
        ("model_name", "iris_model"),
        ("model_name", "9iris"),
        ("model_name", "x" * 64),
        ("model_name", "-iris"),
        ("namespace", "Prod"),
        ("namespace", "a.b"),
        ("model_version", ""),
        ("model_version", "v 1"),
        ("model_version", "1" * 64),
        ("image", "127.0.0.1:5000/iris:latest"),
        ("image", "127.0.0.1:5000/iris@sha256:abc"),
        ("image", "127.0.0.1:5000/Iris@" + GOOD_DIGEST),
        ("image", "iris:1@" + GOOD_DIGEST),
        ("replicas", 0),
        ("replicas", 21),
        ("cpu_limit", "1e3"),
        ("cpu_limit", "0.0001"),
        ("cpu_limit", "one"),
        ("memory_limit", "1GB"),
        ("memory_limit", "0"),
        ("memory_limit", "512m"),
        ("container_port", 0),
        ("container_port", 70000),
        ("managed_by", "mlops control"),
        ("run_id", ""),
        ("deployment_id", "x" * 5000),
    ],
)
def test_bad_fields_are_refused_with_their_name(field, value):
    with pytest.raises(RenderError) as caught:
        DeploymentSpec.validated(**spec_fields(**{field: value}))
    assert caught.value.field == field
    assert caught.value.message


def test_good_image_references_are_accepted():
    for image in (
        "iris@" + GOOD_DIGEST,
        "127.0.0.1:5000/mlops/iris@" + GOOD_DIGEST,
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/mlops/iris-model@" + GOOD_DIGEST,
        "ghcr.io/org/team/model_v2@" + GOOD_DIGEST,
    ):
        spec = DeploymentSpec.validated(**spec_fields(image=image))
        assert spec.image_repository + "@" + spec.image_digest == image


def test_unknown_fields_are_refused_and_the_spec_is_frozen():
    with pytest.raises(RenderError) as caught:
        DeploymentSpec.validated(**spec_fields(replica=2))
    assert caught.value.field == "replica"
    spec = DeploymentSpec(**spec_fields())
    with pytest.raises(ValidationError):
        spec.replicas = 3  # type: ignore[misc]


def test_render_error_is_a_value_error_with_field_and_message():
    error = RenderError("env", "bad")
    assert isinstance(error, ValueError)
    assert (error.field, error.message, str(error)) == ("env", "bad", "env: bad")


def test_requests_above_limits_are_refused():
    with pytest.raises(RenderError, match="cpu_request"):
        DeploymentSpec.validated(**spec_fields(cpu_limit="500m", cpu_request="1"))
    with pytest.raises(RenderError, match="memory_request"):
        DeploymentSpec.validated(**spec_fields(memory_limit="1Gi", memory_request="2Gi"))


def test_autoscaling_and_disruption_budget_bounds():
    with pytest.raises(RenderError, match="min_replicas"):
        DeploymentSpec.validated(**spec_fields(autoscaling={"min_replicas": 5, "max_replicas": 2}))
    with pytest.raises(RenderError, match="drained"):
        DeploymentSpec.validated(**spec_fields(disruption_budget={"min_available": 1}))
    with pytest.raises(RenderError, match="drained"):
        DeploymentSpec.validated(
            **spec_fields(autoscaling={"min_replicas": 2, "max_replicas": 4}, disruption_budget={"min_available": 2})
        )
    spec = DeploymentSpec.validated(**spec_fields(replicas=3, disruption_budget=DisruptionBudget(min_available=2)))
    assert spec.disruption_budget == DisruptionBudget(min_available=2)
    assert DeploymentSpec.validated(**spec_fields(autoscaling=Autoscaling())).autoscaling == Autoscaling(
        min_replicas=1, max_replicas=5, cpu_target_percent=80
    )


@pytest.mark.parametrize("key", ["1ABC", "MY-VAR", "MY VAR", "", "A.B"])
def test_env_names_must_be_c_identifiers(key):
    with pytest.raises(RenderError, match="C identifier"):
        DeploymentSpec.validated(**spec_fields(env={key: "x"}))
    with pytest.raises(RenderError, match="C identifier"):
        DeploymentSpec.validated(**spec_fields(secret_env={key: SecretRef(name="s", key="k")}))


def test_platform_env_cannot_be_overridden_or_doubled():
    with pytest.raises(RenderError, match="MODEL_VERSION"):
        DeploymentSpec.validated(**spec_fields(env={"MODEL_VERSION": "7"}))
    with pytest.raises(RenderError, match="MODEL_NAME"):
        DeploymentSpec.validated(**spec_fields(secret_env={"MODEL_NAME": {"name": "s", "key": "k"}}))
    with pytest.raises(RenderError, match="both env and secret_env"):
        DeploymentSpec.validated(
            **spec_fields(env={"DB_HOST": "db"}, secret_env={"DB_HOST": {"name": "s", "key": "k"}})
        )


def test_secret_refs_are_checked():
    with pytest.raises(RenderError, match="Secret name"):
        DeploymentSpec.validated(**spec_fields(secret_env={"DB_PASSWORD": {"name": "Bad_Name", "key": "k"}}))
    with pytest.raises(RenderError, match="Secret key"):
        DeploymentSpec.validated(**spec_fields(secret_env={"DB_PASSWORD": {"name": "db", "key": "a/b"}}))


CREDENTIALS = [
    ("DB_PASSWORD", "hunter2"),
    ("MLFLOW_TRACKING_PASSWORD", "tracking-pass-1"),
    ("CLIENT_SECRET", "s3cr3t-value"),
    ("HF_TOKEN", "s3cr3t-value"),
    ("OPENAI_API_KEY", "s3cr3t-value"),
    ("AWS_SECRET_ACCESS_KEY", "s3cr3t-value"),
    ("SERVICE_ACCESS_KEY", "s3cr3t-value"),
    ("TLS_PRIVATE_KEY", "s3cr3t-value"),
    ("GOOGLE_APPLICATION_CREDENTIALS", "s3cr3t-value"),
    ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
    ("SOME_ID", "AKIAIOSFODNN7EXAMPLE"),
    ("REPO", "ghp_1234567890abcdefghijABCDEFGHIJ123456"),
    ("REPO", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
    ("REPO", "glpat-abcdefghij0123456789"),
    ("CERT", "-----BEGIN RSA PRIVATE KEY----- MIIEpAIBAAKCAQEA"),
    (
        "SESSION",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    ),
    ("DATABASE_URL", "postgresql://app:s3cr3t@db.example.com:5432/app"),
    ("BLOB", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("SLACK", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp"),
]
NOT_CREDENTIALS = [
    ("LOG_LEVEL", "info"),
    ("MAX_TOKENS", "512"),
    ("TOKENIZER_NAME", "bert-base-uncased"),
    ("RUN_ID", "0f3c2a9d8e7b4c6a9d8e7b4c6a9d8e7b"),
    ("MODEL_DIGEST", "sha256:" + "3f5a9c0e1b7d2468" * 4),
    ("ARTIFACTS", "s3://mlops-artifacts/experiments/12/0f3c2a9d8e7b4c6a/artifacts/model"),
    ("DATABASE_URL", "postgresql://db.example.com:5432/app"),
    ("FEATURES", "sepal_length,sepal_width,petal_length,petal_width"),
    ("DB_PASSWORD", ""),
    ("GREETING", "Hello, world! This sentence is long enough to be checked for randomness."),
]


@pytest.mark.parametrize(("key", "value"), CREDENTIALS)
def test_credentials_are_recognised_and_the_value_is_never_echoed(key, value):
    reason = check_env_value(key, value)
    assert reason is not None
    assert "secret_env" in reason and "Secret" in reason
    assert value not in reason
    with pytest.raises(RenderError) as caught:
        DeploymentSpec.validated(**spec_fields(env={key: value}))
    assert caught.value.field == "env"
    assert value not in str(caught.value)


@pytest.mark.parametrize(("key", "value"), NOT_CREDENTIALS)
def test_ordinary_settings_are_not_mistaken_for_credentials(key, value):
    assert check_env_value(key, value) is None


def test_secret_env_is_the_way_to_pass_a_credential():
    spec = DeploymentSpec.validated(**spec_fields(secret_env={"DB_PASSWORD": {"name": "iris-db", "key": "password"}}))
    patch = render_model(spec)[f"{model_dir(spec.namespace, spec.model_name)}/deployment-patch.yaml"].decode()
    assert 'secretKeyRef:\n                  name: "iris-db"\n                  key: "password"' in patch


def test_model_dir_checks_its_inputs():
    assert model_dir("mlops-models", "iris") == "apps/mlops-models/iris"
    with pytest.raises(ValueError):
        model_dir("../etc", "iris")
