"""The endpoints the GitOps branch holds, each with the model and version it deploys there and what
its target really serves.

An endpoint is a folder ``apps/<namespace>/<endpoint>`` on the branch. The newest commit that changed
the folder names its model and version (trailers), so the list needs no state of its own: git says
what should run, the target says what does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control_api.pipeline.served import served_and_drift
from control_api.targets.base import DeploymentTarget
from renderer.names import APPS_DIR

if TYPE_CHECKING:
    from control_api.adapters.gitops.repo import GitOpsRepo


def endpoint_names(gitops: GitOpsRepo, namespace: str) -> list[str]:
    """The endpoint folders of ``namespace`` at the head of the branch, sorted."""
    files = gitops.read_files(gitops.branch, f"{APPS_DIR}/{namespace}")
    prefix = f"{APPS_DIR}/{namespace}/"
    return sorted({path.removeprefix(prefix).split("/", 1)[0] for path in files if path.startswith(prefix)})


def list_endpoints(
    target: DeploymentTarget, gitops: GitOpsRepo, namespaces: list[str], model_name: str | None = None
) -> list[dict[str, Any]]:
    """Every endpoint of ``namespaces`` (only ``model_name``'s when given), by namespace and name."""
    found = []
    for namespace in namespaces:
        for endpoint in endpoint_names(gitops, namespace):
            newest = gitops.history(path_prefix=f"{APPS_DIR}/{namespace}/{endpoint}", limit=1)
            if not newest:
                continue
            trailers = newest[0].trailers
            owner = trailers.get("Model-Name")
            if owner is None or (model_name is not None and owner != model_name):
                continue  # a folder written by hand, or another model's
            served, drift = served_and_drift(target, gitops, gitops.branch, namespace, owner, endpoint)
            found.append(
                {
                    "namespace": namespace,
                    "endpoint": endpoint,
                    "model_name": owner,
                    "version": trailers.get("Model-Version"),
                    "commit": newest[0].sha,
                    "served": served,
                    "drift": drift,
                }
            )
    return found
