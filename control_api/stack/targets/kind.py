"""What a target kind provides: its settings rules, status checks, pipelines and constructor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from control_api.pipeline.orchestrator import Pipeline
    from control_api.services import Services
    from control_api.settings import Settings
    from control_api.targets.base import DeploymentTarget

# A status-page check: raises when the component is unhealthy, may return a dict describing it.
Check = Callable[[], Any]


@dataclass(frozen=True)
class TargetKind:
    name: str
    # Each problem names the settings involved; an empty list means the settings are consistent.
    settings_problems: Callable[[Settings], list[str]]
    # Component name -> check; each check builds the adapter it pings, so a failed build is reported.
    checks: Callable[[Services], dict[str, Check]]
    # Pipeline kind (deploy, rollback, undeploy) -> its steps, wired with the adapters they use.
    pipelines: Callable[[Services], dict[str, Pipeline]]
    # The target that serves the committed manifests; None for a kind that serves nothing.
    make_target: Callable[[Services], DeploymentTarget | None]
