"""Git failures beyond the two shared ones (``GitConflict`` terminal, ``GitUnavailable`` transient)."""

from __future__ import annotations

from control_api.errors import GitConflict, GitUnavailable, TerminalError

__all__ = ["GitAuthFailed", "GitConflict", "GitPushRejected", "GitRemoteNotFound", "GitUnavailable"]


class GitAuthFailed(TerminalError):
    """The remote refused our credentials (token, SSH key); retrying cannot help."""

    code = "git_auth_failed"


class GitRemoteNotFound(TerminalError):
    """The remote answered but has no such repository (wrong URL, or no read access)."""

    code = "git_remote_not_found"


class GitPushRejected(TerminalError):
    """The remote refused the push for a reason other than a race: a protected branch, a hook."""

    code = "git_push_rejected"
