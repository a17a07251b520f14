"""Error types specific to Argo CD, on top of the project's transient/terminal split."""

from __future__ import annotations

from control_api.errors import TerminalError, TransientError


class ArgoCDAuthFailed(TerminalError):
    """The token or the username/password was refused (401/403); retrying cannot help."""

    code = "argocd_auth_failed"


class ArgoCDRequestRejected(TerminalError):
    """Argo CD refused the request itself (invalid spec, rollback under automated sync, ...)."""

    code = "argocd_request_rejected"


class ArgoCDOperationInProgress(TransientError):
    """Another sync or rollback is still running; the same request succeeds once it finishes."""

    code = "argocd_operation_in_progress"


class ArgoCDTLSFailed(TerminalError):
    """The server's certificate could not be verified; only configuration (a CA bundle) can fix it."""

    code = "argocd_tls_failed"
