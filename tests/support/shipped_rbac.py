"""The control service's shipped RBAC (argocd/control-service-kubernetes-training), as an RBAC policy
for the simulated API server."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from ruamel.yaml import YAML

from tests.simulator.kube.rbac import RbacPolicy
from tests.support.paths import REPO_ROOT

INSTALL_DIR = REPO_ROOT / "argocd" / "control-service-kubernetes-training"
SHIPPED_TRAINING_NAMESPACE = "mlops-training"


def shipped_control_rbac(kustomize_cmd: Sequence[str], training_namespace: str) -> RbacPolicy:
    """The install's roles, with its training namespace renamed to ``training_namespace`` (what an
    operator does who sets ``MLOPS_TRAINING__KUBERNETES__NAMESPACE``)."""
    built = subprocess.run([*kustomize_cmd, str(INSTALL_DIR)], capture_output=True, text=True, timeout=60)
    if built.returncode != 0:
        raise RuntimeError(f"kustomize build of {INSTALL_DIR} failed: {built.stderr}")
    objects = [document for document in YAML(typ="safe", pure=True).load_all(built.stdout) if document]
    for document in objects:
        if document["metadata"].get("namespace") == SHIPPED_TRAINING_NAMESPACE:
            document["metadata"]["namespace"] = training_namespace
    [account] = [document for document in objects if document["kind"] == "ServiceAccount"]
    return RbacPolicy(objects, namespace=account["metadata"]["namespace"], service_account=account["metadata"]["name"])
