"""One interface for every pipeline step (train, register, build, push, render, commit, sync, wait).

A step reads the request and the outputs of earlier steps from its context and returns its own outputs,
which the orchestrator persists in the journal, or ``NotYet`` when it waits for something outside
(a merge, a rollout): the orchestrator then runs it again later without holding a worker meanwhile.
Waiting steps keep their state in outputs named ``poll_*``, which a retry of the deploy clears. Steps
must be safe to re-run: after a crash the step that was running is run again, so each one first looks
for the result of an earlier attempt (an MLflow version tagged with this deployment, an image already
in the registry, a commit with this deployment's trailer) before creating anything.

A step is constructed with the adapters it uses (see ``pipeline/factory.py``); its context carries
the deployment, the earlier outputs, the settings and the journal, nothing else.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from control_api.journal.store import DeploymentRecord, Journal
    from control_api.settings import Settings


@dataclass(frozen=True)
class NotYet:
    """A waiting step's answer: what it waits for does not hold yet; look again in ``retry_after`` s.

    The orchestrator saves ``progress`` with the step (so the wait carries on after a restart),
    shows ``message`` as the step's message, and frees its worker until then: a deploy waiting for a
    review or a rollout holds no thread.
    """

    retry_after: float
    message: str
    progress: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """A finished step's answer: the outputs the journal keeps (names in ``pipeline/outputs.py``)
    and the message its step record shows."""

    outputs: dict[str, Any]
    message: str | None = None


class Step(Protocol):
    name: str  # journal name: "train"
    status_label: str  # deployment status while it runs: "training"
    max_attempts: int  # attempts for transient errors before the deploy fails

    def run(self, ctx: StepContext) -> StepResult | NotYet: ...


@runtime_checkable
class Interruptible(Protocol):
    """A step whose work in flight can be stopped from another thread when its deploy is cancelled
    (kill the training's process group, stop the build). ``outputs`` are the step's saved progress;
    the step's own ``run`` then ends (usually with an error) and the orchestrator finishes the cancel."""

    def cancel(self, deployment_id: str, outputs: dict[str, Any]) -> None: ...


@runtime_checkable
class Discardable(Protocol):
    """A step that undoes what it made when its deploy is cancelled (delete the registered version,
    the pushed tag, revert the commit, close the pull request). Runs for every step that started,
    latest first; must be safe to run again (a crash mid-cancel runs it again after the restart)."""

    def discard(self, ctx: StepContext) -> None: ...


class Cancelled(Exception):
    """Raised inside a step when it notices its deploy was cancelled."""


def never_cancelled() -> bool:
    return False


@dataclass
class StepContext:
    deployment: DeploymentRecord
    outputs: dict[str, Any]  # outputs of the earlier steps, plus this step's saved progress (read-only view)
    settings: Settings
    journal: Journal
    step_name: str
    log_tail_lines: int = 40
    # The cancellation token: long steps look at it inside their loops and stop with ``Cancelled``.
    cancelled: Callable[[], bool] = never_cancelled
    _tail: deque[str] = field(default_factory=deque)
    _pending: list[str] = field(default_factory=list)

    @property
    def request(self) -> dict[str, Any]:
        return self.deployment.request

    @property
    def deployment_id(self) -> str:
        return self.deployment.id

    def log(self, line: str) -> None:
        line = line.rstrip("\n")
        self._tail.append(line)
        while len(self._tail) > self.log_tail_lines:
            self._tail.popleft()
        self._pending.append(line)
        if len(self._pending) >= 20:
            self.flush_log()

    def raise_if_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled(f"deployment {self.deployment_id} was cancelled")

    def flush_log(self) -> None:
        pending, self._pending = self._pending, []
        self.journal.add_log(self.deployment_id, self.step_name, pending)

    def log_tail(self) -> str:
        return "\n".join(self._tail)

    def save_progress(self, **outputs: Any) -> None:
        self.outputs.update(outputs)
        self.journal.step_progress(self.deployment_id, self.step_name, outputs)
