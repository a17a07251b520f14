"""Property: every deploy request the API accepts renders, builds with real ``kubectl kustomize`` and
passes Kubernetes' schemas; the rest are refused (a 422 before anything is created).

Requests are generated from mostly plausible values with wrong ones mixed in, and go through what the
deploy route runs before it creates anything (request model, namespace allowlist, the renderer's rules).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from control_api.api.admission import admit_deploy
from control_api.api.schemas import DeployRequest
from control_api.deployment_spec import spec_fields
from control_api.errors import InvalidRequestError
from control_api.settings import Settings
from renderer import DeploymentSpec, model_dir, render_base, render_model
from tests.support.control import b64

pytestmark = pytest.mark.kustomize

KUBERNETES_VERSION = "1.30"
SERVICE_SETTINGS = Settings(target={"kind": "none"}, data_dir=Path(tempfile.gettempdir()) / "mlops-property-unused")
SCRIPT = b64("print('train')\n")
IMAGE = "127.0.0.1:5000/mlops/model@sha256:" + "ab" * 32


def mostly(valid: st.SearchStrategy, wrong: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(valid, valid, valid, wrong)


names = mostly(st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True), st.text(max_size=70))
namespaces = st.one_of(
    st.none(), st.sampled_from(SERVICE_SETTINGS.api.allowed_namespaces), st.sampled_from(["kube-system", "Bad_NS"])
)
env_keys = mostly(st.from_regex(r"[A-Z_][A-Z0-9_]{0,15}", fullmatch=True), st.text(max_size=12))
env_values = mostly(st.from_regex(r"[ -~]{0,40}", fullmatch=True), st.text(max_size=40))
cpu = mostly(
    st.one_of(
        st.from_regex(r"[1-9][0-9]{1,4}m", fullmatch=True), st.from_regex(r"(0|[1-9])(\.[0-9]{1,3})?", fullmatch=True)
    ),
    st.text(max_size=8),
)
memory = mostly(st.from_regex(r"[1-9][0-9]{1,3}(Mi|Gi|M|G)", fullmatch=True), st.text(max_size=8))
secret_refs = st.fixed_dictionaries(
    {
        "name": mostly(st.from_regex(r"[a-z][a-z0-9.-]{0,20}[a-z0-9]", fullmatch=True), st.text(max_size=20)),
        "key": mostly(st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True), st.text(max_size=20)),
    }
)
autoscaling = st.fixed_dictionaries(
    {"max_replicas": st.integers(-1, 25)},
    optional={"min_replicas": st.integers(-1, 25), "target_cpu_utilization": st.integers(-5, 120)},
)
deployment_configs = st.fixed_dictionaries(
    {},
    optional={
        "replicas": st.integers(-2, 25),
        "cpu_limit": cpu,
        "memory_limit": memory,
        "autoscaling": autoscaling,
    },
)
requests = st.fixed_dictionaries(
    {"script_content": st.just(SCRIPT), "model_name": names},
    optional={
        "namespace": namespaces,
        "environment_vars": st.dictionaries(env_keys, env_values, max_size=4),
        "secret_env": st.dictionaries(env_keys, secret_refs, max_size=2),
        "deployment_config": deployment_configs,
        "replicas": st.integers(-2, 25),
    },
)


def admitted(body: dict) -> tuple[str, dict] | None:
    """What the deploy route keeps of ``body``, or None when it answers 422."""
    try:
        return admit_deploy(DeployRequest.model_validate(body), SERVICE_SETTINGS)
    except ValidationError:
        return None
    except InvalidRequestError as refusal:
        assert refusal.code == "validation_error" and refusal.details, refusal
        return None


def build(files: dict[str, bytes], namespace: str, model_name: str, kustomize_cmd: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="mlops-property-") as root:
        for relative, content in files.items():
            target = Path(root) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
        result = subprocess.run(
            [*kustomize_cmd, str(Path(root) / model_dir(namespace, model_name))],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 0, result.stderr
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=requests)
def test_every_accepted_request_renders_builds_and_validates(body, kustomize_cmd):
    accepted = admitted(body)
    if accepted is None:
        return
    namespace, request = accepted
    spec = DeploymentSpec.validated(
        **spec_fields(
            request,
            namespace,
            model_version="7",
            image=IMAGE,
            run_id="f" * 32,
            model_uri=f"models:/{request['model_name']}/7",
            deployment_id="d" * 32,
        )
    )
    documents = build({**render_base(), **render_model(spec)}, namespace, spec.model_name, kustomize_cmd)
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    kinds = sorted(document["kind"] for document in documents)
    wants_autoscaling = bool((request["deployment_config"] or {}).get("autoscaling"))
    assert ("HorizontalPodAutoscaler" in kinds) == wants_autoscaling, kinds
    container = next(d for d in documents if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]
    plain_env = {item["name"]: item.get("value") for item in container.get("env", []) if "value" in item}
    for key, value in request["environment_vars"].items():
        assert plain_env[key] == value  # what the client sent reaches the container unchanged


def test_the_generator_reaches_both_sides():
    """The property above means little if nearly everything generated were refused (or accepted)."""
    seen = {"accepted": 0, "refused": 0}

    @settings(max_examples=200, deadline=None, database=None)
    @given(body=requests)
    def count(body):
        seen["accepted" if admitted(body) is not None else "refused"] += 1

    count()
    assert seen["accepted"] >= 20 and seen["refused"] >= 20, seen


def test_a_yaml_document_marker_in_an_env_value_is_refused_before_anything_is_created():
    body = {"script_content": SCRIPT, "model_name": "iris", "environment_vars": {"A": "--- x"}}
    assert admitted(body) is None
