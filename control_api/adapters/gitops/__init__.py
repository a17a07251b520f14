"""GitOps repository adapter: commit rendered manifests (direct or on a review branch) and find them again."""

from control_api.adapters.gitops.errors import (
    GitAuthFailed,
    GitConflict,
    GitPushRejected,
    GitRemoteNotFound,
    GitUnavailable,
)
from control_api.adapters.gitops.repo import GitOpsRepo
from control_api.adapters.gitops.types import CommitInfo, CommitRequest, CommitResult

__all__ = [
    "CommitInfo",
    "CommitRequest",
    "CommitResult",
    "GitAuthFailed",
    "GitConflict",
    "GitOpsRepo",
    "GitPushRejected",
    "GitRemoteNotFound",
    "GitUnavailable",
]
