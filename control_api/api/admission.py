"""What a request must pass before anything is created: the namespace allowlist, then (for a deploy)
the renderer's rules on everything the client sent. A refusal is a 422 in the error format."""

from __future__ import annotations

from typing import Any

from control_api.api.schemas import DeployRequest
from control_api.deployment_spec import check_renders
from control_api.errors import InvalidRequestError
from control_api.settings import Settings


def allowed_namespace(settings: Settings, requested: str | None) -> str:
    """The namespace a request is about (the default when it names none), if the allowlist has it."""
    namespace = requested or settings.api.default_namespace
    allowed = settings.api.allowed_namespaces
    if namespace not in allowed:
        raise InvalidRequestError(
            f"namespace {namespace!r} is not allowed; allowed: {', '.join(allowed)}",
            code="validation_error",
            details=[{"field": "namespace", "rule": "allowlist", "message": "namespace is not on the allowlist"}],
        )
    return namespace


def admit_deploy(body: DeployRequest, settings: Settings) -> tuple[str, dict[str, Any]]:
    """The namespace and the journal's copy of an accepted deploy request; raises when it would not render."""
    namespace = allowed_namespace(settings, body.namespace)
    request = body.to_journal(namespace)
    check_renders(request, namespace)
    return namespace, request
