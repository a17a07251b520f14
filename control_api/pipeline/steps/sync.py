"""Step ``sync``: make the target run exactly the committed revision."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from control_api.errors import DeploymentTimedOut
from control_api.pipeline.outputs import (
    COMMIT,
    DEPLOYMENT_URL,
    POLL_DEADLINE,
    POLL_DELAY,
    POLL_REASON,
    POLL_STATE,
    SYNCED_REVISION,
)
from control_api.pipeline.step import NotYet, StepContext, StepResult
from control_api.pipeline.steps.commit import app_of
from control_api.provider import Provider
from control_api.targets.base import AppRef, DeploymentTarget, Ready

FIRST_LOOK_SECONDS = 0.1
MAX_LOOK_SECONDS = 1.0


class SyncStep:
    name = "sync"
    status_label = "syncing"
    max_attempts = 3

    def __init__(self, target: Provider[DeploymentTarget]) -> None:
        self.target = target

    def run(self, ctx: StepContext) -> StepResult:
        app = app_of(ctx)
        revision = ctx.outputs[COMMIT]
        outputs = self.target().sync(app, revision, ctx.log)
        return StepResult(outputs, f"synced {app.application} to {revision[:12]}")


@dataclass(frozen=True)
class TimedOut:
    """A wait's deadline passed before the rollout was ready; ``reason`` is what was still missing."""

    reason: str
    details: dict[str, Any] | None = None


def look_until_ready(
    ctx: StepContext, target: DeploymentTarget, app: AppRef, revision: str, waiting: str
) -> Ready | NotYet | TimedOut:
    """One look of a wait for ``revision`` to run, healthy and reachable, within the ready timeout.

    Looks start 0.1 s apart and back off to 1 s: a quick rollout is answered within a fraction of a
    second of turning ready, and a slow one costs the APIs one request per second. The deadline,
    delay and the target's state between looks are saved (``poll_*``), so a restarted service keeps
    the same clock. ``waiting`` starts the step's message while it waits.
    """
    timeout = ctx.settings.target.ready_timeout_seconds
    now = time.time()
    deadline = float(ctx.outputs.get(POLL_DEADLINE) or now + timeout)
    answer = target.look_ready(app, revision, ctx.outputs.get(POLL_STATE) or {})
    if isinstance(answer, Ready):
        ctx.log(answer.message)
        return answer
    if now >= deadline:
        return TimedOut(answer.reason, answer.details)
    if answer.reason != ctx.outputs.get(POLL_REASON):
        ctx.log(answer.reason)
    delay = min(MAX_LOOK_SECONDS, float(ctx.outputs.get(POLL_DELAY) or FIRST_LOOK_SECONDS / 2) * 2)
    return NotYet(
        retry_after=min(delay, max(0.0, deadline - now)),
        message=f"{waiting}: {answer.reason}",
        progress={
            POLL_DEADLINE: deadline,
            POLL_DELAY: delay,
            POLL_STATE: answer.state,
            POLL_REASON: answer.reason,
        },
    )


class WaitStep:
    """Look at the target until the revision runs, healthy and reachable, or the ready timeout passes
    (``look_until_ready``); between looks the step yields its worker (``NotYet``)."""

    name = "wait"
    status_label = "waiting"
    max_attempts = 2

    def __init__(self, target: Provider[DeploymentTarget]) -> None:
        self.target = target

    def run(self, ctx: StepContext) -> StepResult | NotYet:
        # The revision the target actually synced: the commit itself, or under automated sync the
        # branch head that holds it.
        revision = ctx.outputs.get(SYNCED_REVISION) or ctx.outputs[COMMIT]
        answer = look_until_ready(ctx, self.target(), app_of(ctx), revision, "waiting")
        if isinstance(answer, TimedOut):
            timeout = ctx.settings.target.ready_timeout_seconds
            raise DeploymentTimedOut(f"{answer.reason}, after {timeout:.0f} s", details=answer.details)
        if isinstance(answer, NotYet):
            return answer
        return StepResult(answer.outputs, f"serving at {answer.outputs[DEPLOYMENT_URL]}")
