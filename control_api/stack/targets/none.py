"""Target ``none``: train and register only. The deploy ends ``registered``; nothing is served, so
there is no rollback or undeploy and no target to check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.pipeline.factory import registration_pipelines
from control_api.stack.targets.kind import Check, TargetKind

if TYPE_CHECKING:
    from control_api.services import Services
    from control_api.settings import Settings


def settings_problems(settings: Settings) -> list[str]:
    return []


def checks(services: Services) -> dict[str, Check]:
    return {}


KIND = TargetKind(
    name="none",
    settings_problems=settings_problems,
    checks=checks,
    pipelines=registration_pipelines,
    make_target=lambda services: None,
)
