"""What a model's target really serves, compared with what git's branch says it should.

Git is the desired state, but a cluster can be made to run something else without a commit: a
rollback in the Argo CD UI syncs an older revision of the same path. The target reports the revision
it applied last; the commit that last changed the model's folder at that revision names the version.
When that is not the newest deploy commit of the model on the branch, the model has drifted, and
the next deploy or an API rollback (both commits plus a sync) brings git and the cluster together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from control_api.adapters.gitops.types import CommitInfo
from control_api.pipeline.steps.rollback import deploy_history
from control_api.targets.base import AppRef, DeploymentTarget, ServedState, app_ref

if TYPE_CHECKING:
    from control_api.adapters.gitops.repo import GitOpsRepo

HISTORY_DEPTH = 200  # deploy commits read to place the target's syncs in order


@dataclass(frozen=True)
class DeployCommit:
    sha: str
    version: str | None
    image: str | None
    action: str

    @classmethod
    def from_info(cls, info: Any) -> DeployCommit:
        return cls(
            sha=info.sha,
            version=info.trailers.get("Model-Version"),
            image=info.trailers.get("Image"),
            action=info.trailers.get("Action", "deploy"),
        )


def served_and_drift(
    target: DeploymentTarget,
    gitops: GitOpsRepo,
    branch_name: str,
    namespace: str,
    model_name: str,
    endpoint: str | None = None,
    commits: list[CommitInfo] | None = None,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``served`` (version, commit, image, how it got there) and ``drift`` (None when in agreement)
    of the model's endpoint (its default one when ``endpoint`` is None). ``commits``: the model's
    deploy history there, newest first, when the caller has already read it."""
    app = app_ref(namespace, model_name, endpoint)
    if commits is None:
        _, commits = deploy_history(gitops, namespace, model_name, limit=HISTORY_DEPTH, endpoint=endpoint)
    state: ServedState | None = target.served(app)
    if state is None:
        return None, None
    branch = DeployCommit.from_info(commits[0]) if commits else None
    served_commit = _served_commit(gitops, app, state, commits)
    last_sync = state.syncs[-1] if state.syncs else None
    served = {
        "namespace": namespace,
        "endpoint": app.endpoint,
        "version": served_commit.version if served_commit else None,
        "commit": served_commit.sha if served_commit else None,
        "image": (served_commit.image if served_commit else None) or state.image,
        "revision": state.revision,
        "healthy": state.healthy,
        "url": state.url,
        "how": _how(state, served_commit, branch, commits),
        "synced_at": last_sync.deployed_at if last_sync else None,
        "initiated_by": last_sync.initiated_by if last_sync else None,
    }
    drift = None
    if branch is not None and served_commit is not None and served_commit.sha != branch.sha:
        drift = {
            "branch": branch_name,
            "branch_commit": branch.sha,
            "branch_version": branch.version,
            "message": (
                f"the cluster serves version {served_commit.version} (commit {served_commit.sha[:12]}) while "
                f"{branch_name} says version {branch.version} (commit {branch.sha[:12]}); "
                "the next deploy, or POST /mlops/models/{name}/rollback, brings them together"
            ).replace("{name}", model_name)
            + (f" (with endpoint_name {app.endpoint!r})" if app.named_endpoint else ""),
        }
    return served, drift


def target_syncs(
    target: DeploymentTarget,
    gitops: GitOpsRepo,
    namespace: str,
    model_name: str,
    commits: list[CommitInfo] | None = None,
    endpoint: str | None = None,
) -> list[dict[str, Any]]:
    """The target's own record of what it applied (Argo CD's history), newest first, each with the
    model version it ran and whether it went back to an older deploy commit (a rollback).
    ``commits``: the model's deploy history, newest first, when the caller has already read it."""
    app = app_ref(namespace, model_name, endpoint)
    if commits is None:
        _, commits = deploy_history(gitops, namespace, model_name, limit=HISTORY_DEPTH, endpoint=endpoint)
    state: ServedState | None = target.served(app, with_url=False)
    if state is None or not state.syncs:
        return []
    order = {commit.sha: position for position, commit in enumerate(commits)}  # 0 = newest
    entries = []
    previous_position: int | None = None
    for record in state.syncs:
        info = gitops.last_change(record.revision, app.path)
        commit = DeployCommit.from_info(info) if info is not None else None
        position = order.get(commit.sha) if commit else None
        went_back = position is not None and previous_position is not None and position > previous_position
        entries.append(
            {
                "id": record.id,
                "revision": record.revision,
                "commit": commit.sha if commit else None,
                "version": commit.version if commit else None,
                "deployed_at": record.deployed_at,
                "initiated_by": record.initiated_by,
                "automated": record.automated,
                "kind": "rollback" if went_back else "sync",
            }
        )
        if position is not None:
            previous_position = position
    return list(reversed(entries))


def _served_commit(
    gitops: GitOpsRepo, app: AppRef, state: ServedState, commits: list[CommitInfo]
) -> DeployCommit | None:
    if state.revision:
        info = gitops.last_change(state.revision, app.path)
        return DeployCommit.from_info(info) if info is not None else None
    if state.image:
        # The local target reports the running image; the newest deploy commit of that image made it.
        match = next((c for c in commits if c.trailers.get("Image") == state.image), None)
        return DeployCommit.from_info(match) if match is not None else None
    return None


def _how(
    state: ServedState, served: DeployCommit | None, branch: DeployCommit | None, commits: list[CommitInfo]
) -> str:
    if served is None:
        return "unknown: the running revision is not a deploy commit of this model"
    if branch is not None and served.sha == branch.sha:
        via = f"{served.action} commit at the head of the branch"
    else:
        via = "an older deploy commit (rolled back outside git, e.g. in the Argo CD UI)"
    last = state.syncs[-1] if state.syncs else None
    if last is None:
        return via
    who = "automated sync" if last.automated else (last.initiated_by or "unknown user")
    return f"{via}; last applied by {who} (Argo CD history id {last.id})"
