"""The endpoints the GitOps branch holds, each with the model and version it deploys there and what
its target really serves.

An endpoint is a folder ``apps/<namespace>/<endpoint>`` on the branch. The newest commit that changed
the folder names its model and version (trailers), so the list needs no state of its own: git says
what should run, the target says what does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from control_api.pipeline.served import HISTORY_DEPTH, served_and_drift
from control_api.targets.base import DeploymentTarget
from renderer.names import APPS_DIR

if TYPE_CHECKING:
    from control_api.adapters.gitops.repo import GitOpsRepo


def list_endpoints(
    target: DeploymentTarget, gitops: GitOpsRepo, namespaces: list[str], model_name: str | None = None
) -> list[dict[str, Any]]:
    """Every endpoint of ``namespaces`` (only ``model_name``'s when given), by namespace and name."""
    found = []
    for namespace in namespaces:
        for endpoint in gitops.folders(gitops.branch, f"{APPS_DIR}/{namespace}"):
            # One read serves both the owner (its newest commit) and the owner's history there.
            history = gitops.history(path_prefix=f"{APPS_DIR}/{namespace}/{endpoint}", limit=HISTORY_DEPTH)
            if not history:
                continue
            trailers = history[0].trailers
            owner = trailers.get("Model-Name")
            if owner is None or (model_name is not None and owner != model_name):
                continue  # a folder written by hand, or another model's
            owners_commits = [c for c in history if c.trailers.get("Model-Name") == owner]
            served, drift = served_and_drift(
                target, gitops, gitops.branch, namespace, owner, endpoint, commits=owners_commits
            )
            found.append(
                {
                    "namespace": namespace,
                    "endpoint": endpoint,
                    "model_name": owner,
                    "version": trailers.get("Model-Version"),
                    "commit": history[0].sha,
                    "served": served,
                    "drift": drift,
                }
            )
    return found
