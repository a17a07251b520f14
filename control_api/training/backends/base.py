"""The interface of a training backend: where a training script runs.

A backend starts one training per deployment and is then asked, one poll at a time, how it is doing,
so a waiting pipeline step never sleeps inside the backend. ``start`` is idempotent per deployment: a
restarted control service calling it again re-attaches to the training already running.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

LogSink = Callable[[str], None]


class TrainingState(enum.StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class TrainingResources:
    """What one training asks for; None means the backend's default."""

    cpu: str | None = None
    memory: str | None = None
    gpu: int = 0
    timeout_seconds: int | None = None


@dataclass(frozen=True)
class TrainingRequest:
    deployment_id: str
    image: str  # the training image (environment + hook), by tag or digest
    script: str  # the script's source
    env: Mapping[str, str] = field(default_factory=dict)  # MLFLOW_RUN_ID, MLFLOW_EXPERIMENT_ID, ...
    # Variables whose values may carry credentials (the tracking URI, the script's own variables),
    # beside ``env``: a backend keeps them out of the objects it describes the training with.
    secret_env: Mapping[str, str] = field(default_factory=dict)
    resources: TrainingResources = field(default_factory=TrainingResources)
    command: Sequence[str] | None = None  # default: python <the script>


@dataclass(frozen=True)
class TrainingOutcome:
    """One look at a training. ``reason`` names the cause of a failure in the platform's words
    (``OOMKilled``, ``DeadlineExceeded``, ``BackoffLimitExceeded``, ``ImagePullFailed``,
    ``Unschedulable``, ``Deleted``); ``message`` says it for a person."""

    state: TrainingState
    reason: str = ""
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.state is not TrainingState.RUNNING


class TrainingBackend(Protocol):
    def start(self, request: TrainingRequest, on_log: LogSink | None = None) -> None:
        """Start the training, or re-attach to the one already running for this deployment."""

    def look(self, deployment_id: str) -> TrainingOutcome:
        """One poll of the training's state (no waiting)."""

    def cancel(self, deployment_id: str) -> None:
        """Stop the training and remove what it left (idempotent)."""
