"""The project's own error types.

Adapters translate third-party exceptions into these at their boundary, so the orchestrator and the
HTTP layer only ever reason about two questions: is it worth retrying (transient vs terminal), and
which HTTP status does a client see (one ordered table in ``control_api.api.errors``).
"""

from __future__ import annotations

from typing import Any


class MlopsError(Exception):
    """Base class. ``code`` is a stable machine-readable identifier shown to API clients."""

    code: str = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.details = details

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class TransientError(MlopsError):
    """Worth retrying later: a remote was down, a push raced, a timeout passed."""

    code = "transient_error"


class TerminalError(MlopsError):
    """Retrying the same inputs gives the same failure: fix the input or the configuration."""

    code = "terminal_error"


# ---- request-level errors (raised before anything is created) ----------------------------------


class InvalidRequestError(TerminalError):
    code = "invalid_request"


class NotFoundError(TerminalError):
    code = "not_found"


class ConflictError(TerminalError):
    code = "conflict"


class ForbiddenError(TerminalError):
    """The caller's key may not act on this (a namespace outside its scope)."""

    code = "forbidden"


# ---- pipeline failures -------------------------------------------------------------------------


class TrainingFailed(TerminalError):
    code = "training_failed"


class RequirementsInstallFailed(TerminalError):
    code = "requirements_install_failed"


class TrainingTimeout(TerminalError):
    code = "training_timeout"


class NoModelLogged(TerminalError):
    code = "no_model_logged"


class SeveralModelsLogged(TerminalError):
    code = "several_models_logged"


class ImageBuildFailed(TerminalError):
    code = "image_build_failed"


class RegistryAuthFailed(TerminalError):
    code = "registry_auth_failed"


class RegistryUnavailable(TransientError):
    code = "registry_unavailable"


class GitConflict(TerminalError):
    code = "git_conflict"


class GitUnavailable(TransientError):
    code = "git_unavailable"


class SyncFailed(TerminalError):
    code = "sync_failed"


class DeploymentTimedOut(TransientError):
    code = "timed_out"


class ServiceUnavailable(TransientError):
    """An external system the service depends on (MLflow, Docker, Argo CD ...) did not answer."""

    code = "service_unavailable"
