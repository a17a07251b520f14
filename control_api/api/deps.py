"""Typed dependencies: routes ask for what they need; the app state owns the instances."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from control_api.errors import ForbiddenError
from control_api.pipeline.admission import Admission
from control_api.pipeline.orchestrator import Orchestrator
from control_api.services import Services
from control_api.settings import Settings


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_settings(request: Request) -> Settings:
    return request.app.state.services.settings


def get_orchestrator(request: Request) -> Orchestrator:
    return request.app.state.orchestrator


def get_admission(request: Request) -> Admission:
    return request.app.state.admission


def get_requester(request: Request) -> str:
    """Who is asking: the API key's name once authentication is on, else 'anonymous'."""
    return getattr(request.state, "principal", None) or "anonymous"


def key_namespaces(request: Request) -> list[str] | None:
    """The namespaces the caller's API key is limited to; None for an unscoped key or no auth."""
    spec = getattr(request.state, "api_key", None)
    return list(spec.namespaces) if spec is not None and spec.namespaces is not None else None


def require_namespace_access(request: Request, namespace: str) -> None:
    scope = key_namespaces(request)
    if scope is not None and namespace not in scope:
        name = request.state.api_key.name
        raise ForbiddenError(
            f"key {name!r} is limited to the namespaces {', '.join(scope) or '(none)'}; "
            f"{namespace!r} is not one of them",
            code="forbidden",
            details=[{"field": "namespace", "rule": "key_scope", "value": namespace}],
        )


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
OrchestratorDep = Annotated[Orchestrator, Depends(get_orchestrator)]
AdmissionDep = Annotated[Admission, Depends(get_admission)]
RequesterDep = Annotated[str, Depends(get_requester)]
