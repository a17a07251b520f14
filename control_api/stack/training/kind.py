"""What a training backend kind provides: its settings rules, its admission check and its train step."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from control_api.pipeline.step import Step
    from control_api.services import Services
    from control_api.settings import Settings
    from control_api.training.backends.base import TrainingBackend


def admit_anything(settings: Settings, request: dict[str, Any]) -> None:
    """A kind whose train step takes no per-request resources has nothing to check."""


def no_backend(settings: Settings) -> TrainingBackend | None:
    """The kind trains inside the train step itself (no separate backend to start, look at or cancel)."""
    return None


@dataclass(frozen=True)
class TrainingKind:
    name: str
    # Each problem names the settings involved; an empty list means the settings are consistent.
    settings_problems: Callable[[Settings], list[str]]
    # Raises InvalidRequestError (a 4xx) when the journaled deploy request asks for what the kind refuses.
    admit: Callable[[Settings, dict[str, Any]], None]
    # The ``train`` step of the deploy pipeline, wired with the adapters it uses.
    make_train_step: Callable[[Services], Step]
    # The backend that runs trainings outside the control service (None when the step runs them itself).
    make_backend: Callable[[Settings], TrainingBackend | None] = no_backend
