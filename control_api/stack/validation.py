"""Settings that contradict each other stop the service before it starts, with every problem named.

Each rule lives with the kind it concerns (``TargetKind.settings_problems``, ``BuilderKind.settings_problems``);
this module only asks the configured kinds and reports what they found.
"""

from __future__ import annotations

from control_api.settings import Settings
from control_api.stack.targets import target_kind


class StackMisconfigured(ValueError):
    """The settings cannot work together; ``problems`` names each contradiction and its settings."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("the settings do not work together:\n" + "\n".join(f"- {p}" for p in problems))


def stack_problems(settings: Settings) -> list[str]:
    return target_kind(settings.target.kind).settings_problems(settings)


def validate_stack(settings: Settings) -> None:
    problems = stack_problems(settings)
    if problems:
        raise StackMisconfigured(problems)
