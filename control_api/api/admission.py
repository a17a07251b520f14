"""What a deploy request must pass before admission sees it: the namespace allowlist, then the
renderer's rules on everything the client sent. A refusal is a 422 in the error format."""

from __future__ import annotations

from typing import Any

from control_api.api.schemas import DeployRequest
from control_api.deployment_spec import check_renders
from control_api.pipeline.admission import allowed_namespace
from control_api.settings import Settings


def admit_deploy(body: DeployRequest, settings: Settings) -> tuple[str, dict[str, Any]]:
    """The namespace and the journal's copy of an accepted deploy request; raises when it would not render."""
    namespace = allowed_namespace(settings.api, body.namespace)
    request = body.to_journal(namespace)
    check_renders(request, namespace)
    return namespace, request
