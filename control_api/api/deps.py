"""Typed dependencies: routes ask for what they need; the app state owns the instances."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from control_api.pipeline.orchestrator import Orchestrator
from control_api.services import Services
from control_api.settings import Settings


def get_services(request: Request) -> Services:
    return request.app.state.services


def get_settings(request: Request) -> Settings:
    return request.app.state.services.settings


def get_orchestrator(request: Request) -> Orchestrator:
    return request.app.state.orchestrator


def get_requester(request: Request) -> str:
    """Who is asking: the API key's name once authentication is on, else 'anonymous'."""
    return getattr(request.state, "principal", None) or "anonymous"


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
OrchestratorDep = Annotated[Orchestrator, Depends(get_orchestrator)]
RequesterDep = Annotated[str, Depends(get_requester)]
