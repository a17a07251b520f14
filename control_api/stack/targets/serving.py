"""What every target kind that serves a model shares: the image and GitOps checks and settings rules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from control_api.stack.builders import builder_kind
from control_api.stack.targets.kind import Check

if TYPE_CHECKING:
    from control_api.services import Services
    from control_api.settings import Settings


def serving_settings_problems(settings: Settings) -> list[str]:
    problems = builder_kind(settings.build.backend).settings_problems(settings)
    if settings.git.review_mode and settings.forge.kind == "none":
        problems.append(
            "git.review_mode is on but no forge is configured to open the pull requests: set forge.kind "
            "(MLOPS_GIT__REVIEW_MODE, MLOPS_FORGE__KIND)"
        )
    return problems


def serving_checks(services: Services) -> dict[str, Check]:
    """The image builder, the registry and the GitOps repo. Lambdas, so that building an adapter
    (not just pinging it) fails inside the timed check."""
    builder = builder_kind(services.settings.build.backend)
    return {
        builder.check_name: lambda: services.image_builder.ping(),
        "registry": lambda: services.registry.ping(),
        "git": lambda: services.gitops.ping(),
    }
