"""Target ``local``: the committed manifests run on this machine's Docker Engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.pipeline.factory import serving_pipelines
from control_api.stack.targets.kind import Check, TargetKind
from control_api.stack.targets.serving import serving_checks, serving_settings_problems
from control_api.targets.local import LocalTarget

if TYPE_CHECKING:
    from control_api.services import Services


def make_target(services: Services) -> LocalTarget:
    return LocalTarget(services.settings, lambda: services.local_runtime, lambda: services.image_builder)


def checks(services: Services) -> dict[str, Check]:
    return serving_checks(services)


KIND = TargetKind(
    name="local",
    settings_problems=serving_settings_problems,
    checks=checks,
    pipelines=serving_pipelines,
    make_target=make_target,
)
