"""The shipped control-service Deployment builds images with buildah: no Docker Engine address, the
settings the buildah backend reads, storage volumes at the paths those settings name, and a security
context that gives buildah's root its capabilities only inside the pod's own user namespace."""

from __future__ import annotations

import copy
import subprocess

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from control_api.settings import BuildSettings
from tests.contracts.test_manifest_contracts import CONTROL_SERVICE_DIR, KUBERNETES_VERSION

pytestmark = pytest.mark.kustomize


@pytest.fixture(scope="module")
def deployment(kustomize_cmd) -> dict:
    built = subprocess.run([*kustomize_cmd, str(CONTROL_SERVICE_DIR)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    documents = [document for document in YAML(typ="safe", pure=True).load_all(built.stdout) if document]
    (found,) = [document for document in documents if document["kind"] == "Deployment"]
    return found


def _env(container: dict) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def test_builds_use_buildah_and_no_docker_host(deployment):
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = _env(container)
    assert not any("DOCKER" in name for name in env), env
    build = BuildSettings.model_validate(
        {
            name.removeprefix("MLOPS_BUILD__").lower(): value
            for name, value in env.items()
            if name.startswith("MLOPS_BUILD__")
        }
    )
    assert (build.backend, build.buildah_isolation, build.buildah_storage_driver) == ("buildah", "chroot", "overlay")
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in deployment["spec"]["template"]["spec"]["volumes"]}
    for path in (build.buildah_storage_root, build.buildah_run_root, env["TMPDIR"]):
        assert str(path) in mounts, f"{path} is not a volume: buildah would write into the container's own layer"
        assert "emptyDir" in volumes[mounts[str(path)]]


def test_buildah_root_is_confined_to_the_pods_user_namespace(deployment):
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["hostUsers"] is False, "uid 0 in the pod must not be uid 0 on the node"
    assert pod["securityContext"]["runAsUser"] == 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert "privileged" not in security or security["privileged"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert {"SETUID", "SETGID", "SYS_CHROOT", "SYS_ADMIN", "CHOWN"} <= set(security["capabilities"]["add"])


def test_the_schema_check_would_catch_a_misspelt_security_field(deployment):
    """The manifest tests validate strictly against Kubernetes' schema, so the fields above are real."""
    kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["hostUser"] = False
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
