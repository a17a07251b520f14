"""A canary overlay beside the stable one builds with real `kubectl kustomize` into two Deployments
behind the endpoint's one Service, with selectors that keep their pods apart where they must."""

from __future__ import annotations

import subprocess

import kubernetes_validate
import pytest
from render_helpers import DIGEST_V1, DIGEST_V2, KUBERNETES_VERSION, load_documents, minimal_spec, write_tree

from renderer import RenderError, model_dir, render_base, render_canary, render_canary_base, render_model, replica_split
from renderer.spec import Autoscaling

pytestmark = pytest.mark.kustomize

V2_IMAGE = f"127.0.0.1:5000/mlops/iris@{DIGEST_V2}"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def _build(tmp_path, kustomize_cmd, files):
    write_tree(tmp_path, {**render_base(), **render_canary_base(), **files})
    result = subprocess.run(
        [*kustomize_cmd, str(tmp_path / model_dir("mlops-models", "iris"))], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return load_documents(result.stdout)


def test_canary_builds_beside_the_stable_version(tmp_path, kustomize_cmd):
    stable = render_model(minimal_spec(replicas=3))
    canary_spec = minimal_spec(
        model_version="4", image=V2_IMAGE, deployment_id="dep-0002", env={"THRESHOLD": "0.7"}, replicas=2
    )
    files, split = render_canary(stable, canary_spec, 25)
    assert (split.stable_replicas, split.canary_replicas) == (3, 1)

    # The stable files are unchanged but for the one resource line.
    directory = model_dir("mlops-models", "iris")
    for path, content in stable.items():
        if not path.endswith("/kustomization.yaml"):
            assert files[path] == content
    assert (
        files[f"{directory}/kustomization.yaml"].replace(b"  - canary\n", b"")
        == stable[f"{directory}/kustomization.yaml"]
    )

    documents = _build(tmp_path, kustomize_cmd, files)
    for document in documents:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    by_name = {(d["kind"], d["metadata"]["name"]): d for d in documents}
    assert sorted(by_name) == [("Deployment", "iris"), ("Deployment", "iris-canary"), ("Service", "iris")]
    stable_deployment = by_name[("Deployment", "iris")]
    canary = by_name[("Deployment", "iris-canary")]
    service = by_name[("Service", "iris")]

    assert stable_deployment["spec"]["replicas"] == 3
    assert canary["spec"]["replicas"] == 1
    stable_container = stable_deployment["spec"]["template"]["spec"]["containers"][0]
    canary_container = canary["spec"]["template"]["spec"]["containers"][0]
    assert stable_container["image"] == f"127.0.0.1:5000/mlops/iris@{DIGEST_V1}"
    assert canary_container["image"] == V2_IMAGE
    assert {e["name"]: e.get("value") for e in canary_container["env"]} == {
        "MODEL_NAME": "iris",
        "MODEL_VERSION": "4",
        "THRESHOLD": "0.7",
    }
    assert canary["metadata"]["namespace"] == "mlops-models"
    # The canary keeps the base's hardening: it is built from the same base.
    assert canary_container["securityContext"] == stable_container["securityContext"]
    assert canary_container["readinessProbe"] == stable_container["readinessProbe"]

    stable_pods = stable_deployment["spec"]["template"]["metadata"]["labels"]
    canary_pods = canary["spec"]["template"]["metadata"]["labels"]
    assert canary_pods["mlops.io/track"] == "canary"
    assert canary_pods["mlops.io/canary-version"] == "4"
    assert canary["metadata"]["annotations"]["mlops.io/canary-weight"] == "25"
    # A new weight changes the Deployment, not its pod template: the canary's pods keep running.
    assert "mlops.io/canary-weight" not in canary["spec"]["template"]["metadata"]["annotations"]
    assert canary["metadata"]["annotations"]["mlops.io/canary-deployment-id"] == "dep-0002"
    # The one Service selects the pods of both; the canary's selector leaves the stable's pods out.
    assert _selects(service["spec"]["selector"], stable_pods)
    assert _selects(service["spec"]["selector"], canary_pods)
    assert not _selects(canary["spec"]["selector"]["matchLabels"], stable_pods)
    # The stable's selector is immutable, so the canary leaves it as it was.
    plain = {(d["kind"], d["metadata"]["name"]): d for d in _build(tmp_path / "plain", kustomize_cmd, stable)}
    assert stable_deployment["spec"]["selector"] == plain[("Deployment", "iris")]["spec"]["selector"]
    assert stable_deployment == plain[("Deployment", "iris")]


@pytest.mark.parametrize(
    ("stable", "weight", "canary"),
    [(1, 10, 1), (1, 50, 1), (3, 25, 1), (3, 50, 3), (4, 20, 1), (9, 10, 1), (2, 90, 18)],
)
def test_weights_become_replica_ratios(stable, weight, canary):
    split = replica_split(stable, weight)
    assert split.canary_replicas == canary
    assert split.stable_replicas == stable


def test_weight_outside_the_open_range_is_refused():
    for weight in (0, 100, 150):
        with pytest.raises(RenderError):
            replica_split(3, weight)


def test_an_autoscaled_stable_version_cannot_take_a_replica_ratio():
    stable = render_model(minimal_spec(autoscaling=Autoscaling(min_replicas=2, max_replicas=4)))
    with pytest.raises(RenderError, match="autoscaled"):
        render_canary(stable, minimal_spec(model_version="4", image=V2_IMAGE), 50)


def test_a_kustomization_not_written_here_is_refused():
    stable = render_model(minimal_spec())
    path = f"{model_dir('mlops-models', 'iris')}/kustomization.yaml"
    stable[path] = stable[path].replace(b"resources:\n", b"resources:\n  - extra.yaml\n")
    with pytest.raises(RenderError, match="not written by this renderer"):
        render_canary(stable, minimal_spec(model_version="4", image=V2_IMAGE), 50)
