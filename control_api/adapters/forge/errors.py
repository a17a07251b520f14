"""Forge failures on top of the project's transient/terminal split."""

from __future__ import annotations

from control_api.errors import TerminalError, TransientError


class ForgeAuthFailed(TerminalError):
    """The forge refused the token (401/403): wrong token, expired, or missing a scope."""

    code = "forge_auth_failed"


class ForgeRequestRejected(TerminalError):
    """The forge refused the request itself (unknown branch, invalid title, ...)."""

    code = "forge_request_rejected"


class ForgeUnavailable(TransientError):
    """The forge did not answer, answered 5xx, or asked us to slow down."""

    code = "forge_unavailable"
