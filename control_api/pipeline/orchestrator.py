"""Walks a deployment's steps in order, persisting each step's state and outputs in the journal.

Transient errors are retried with backoff inside the step's attempt budget; terminal errors fail the
deploy at once. ``DeploymentTimedOut`` ends in ``timed_out``, which a retry resumes. On start the
service calls ``resume_unfinished`` and every deploy that was running when it stopped continues from
its first unfinished step.

A waiting step (review, rollout) answers ``NotYet``: its state is saved, its worker is freed, and a
single scheduler thread starts the deployment again when the step asked to be looked at, so any
number of deploys can wait while the workers keep running the others.
"""

from __future__ import annotations

import heapq
import logging
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from control_api.errors import DeploymentTimedOut, MlopsError, TransientError
from control_api.journal.store import DeploymentRecord, DeploymentStatus, Journal, StepStatus
from control_api.pipeline.outputs import FINAL_STATUS
from control_api.pipeline.step import Discardable, Interruptible, NotYet, Step, StepContext, never_cancelled
from control_api.settings import Settings

log = logging.getLogger(__name__)

# _run_step's answers besides True (done) and False (failed).
YIELDED = "yielded"
CANCELLED = "cancelled"
# How soon a cancel whose clean-up failed (MLflow or the registry unreachable) is tried again.
CANCEL_RETRY_SECONDS = 5.0


@dataclass(frozen=True)
class Pipeline:
    kind: str  # deploy | rollback | undeploy
    steps: tuple[Step, ...]
    final_status: str

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]


class Orchestrator:
    def __init__(self, journal: Journal, settings: Settings, pipelines: dict[str, Pipeline], workers: int = 8) -> None:
        self.journal = journal
        self.settings = settings
        self.pipelines = pipelines
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deploy")
        self._running: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self.retry_base_delay = 1.0
        # Deployments whose waiting step looks again at a time (monotonic), and which of them are
        # between two looks of one wait (their next look is not a new attempt).
        self._due: list[tuple[float, str]] = []
        self._polling: set[str] = set()
        self._due_changed = threading.Condition()
        # Cancellation tokens of this replica's deployments, and the step each one is running now
        # (so a cancel can interrupt it). The journal's ``cancelling`` status is the durable token.
        self._cancel_tokens: dict[str, threading.Event] = {}
        self._current_step: dict[str, Step] = {}
        self._scheduler = threading.Thread(target=self._schedule_loop, name="deploy-scheduler", daemon=True)
        self._scheduler.start()

    # ---- scheduling ----------------------------------------------------------------------------

    def start(self, deployment_id: str) -> bool:
        """Run the deployment on a worker; False when it is already running."""
        with self._lock:
            if deployment_id in self._running and not self._running[deployment_id].done():
                return False
            if self._stopping.is_set():
                return False
            self._running[deployment_id] = self._executor.submit(self._run_guarded, deployment_id)
            return True

    def look_now(self, deployment_id: str) -> None:
        """Have a waiting deployment's step look again at once (a promote or abort asked by hand)."""
        self._look_again(deployment_id, 0.0)

    def _look_again(self, deployment_id: str, delay: float) -> None:
        with self._due_changed:
            heapq.heappush(self._due, (time.monotonic() + max(0.0, delay), deployment_id))
            self._due_changed.notify()

    def _schedule_loop(self) -> None:
        while not self._stopping.is_set():
            with self._due_changed:
                while not self._stopping.is_set() and (not self._due or self._due[0][0] > time.monotonic()):
                    timeout = (self._due[0][0] - time.monotonic()) if self._due else None
                    self._due_changed.wait(timeout=timeout if timeout is None else max(0.0, timeout))
                if self._stopping.is_set():
                    return
                _, deployment_id = heapq.heappop(self._due)
            if not self.start(deployment_id) and not self._stopping.is_set():
                # Its worker has not quite returned from the previous look: try again shortly.
                self._look_again(deployment_id, 0.05)

    def resume_unfinished(self) -> list[str]:
        resumed = []
        for record in self.journal.unfinished():
            if record.status == DeploymentStatus.AWAITING_REVIEW or record.kind in self.pipelines:
                log.info("resuming deployment %s (%s) at status %s", record.id, record.model_name, record.status)
                self.start(record.id)
                resumed.append(record.id)
        return resumed

    def resume(self, deployment_id: str, first_unfinished: str | None) -> DeploymentRecord:
        """Run a finished deployment again from ``first_unfinished`` (admission decides whether it may).
        Raises ``ActiveOperationExists`` when another operation on the model became active meanwhile."""
        if first_unfinished:
            self.journal.reset_steps_from(deployment_id, first_unfinished)
        self.journal.set_status(deployment_id, DeploymentStatus.PENDING, clear_error=True)
        self._notify()
        self.start(deployment_id)
        return self.journal.get(deployment_id)

    def cancel(self, deployment_id: str, cancelled_by: str) -> DeploymentRecord:
        """Ask a deployment to stop: mark it ``cancelling``, interrupt the step in flight on this
        replica, and have a worker finish the cancel (undo what the deploy made, end ``cancelled``).
        Raises ``ConflictError`` when it has already finished. A deploy running on another replica
        notices the journal's status between steps; one that crashed finishes the cancel on resume."""
        record, _ = self.journal.request_cancel(deployment_id, cancelled_by)
        self._token(deployment_id).set()
        self._notify()
        step = self._current_step.get(deployment_id)
        if step is not None and isinstance(step, Interruptible):
            running = record.step(step.name)
            try:
                step.cancel(deployment_id, dict(running.outputs) if running is not None else {})
            except Exception:  # the worker still notices the token; the clean-up still runs
                log.exception("interrupting step %s of %s failed", step.name, deployment_id)
        self.start(deployment_id)  # no-op while a worker runs it: that worker finishes the cancel
        return self.journal.get(deployment_id)

    def _token(self, deployment_id: str) -> threading.Event:
        with self._lock:
            return self._cancel_tokens.setdefault(deployment_id, threading.Event())

    def cancel_requested(self, deployment_id: str) -> bool:
        if self._token(deployment_id).is_set():
            return True
        if self.journal.get(deployment_id).status == DeploymentStatus.CANCELLING:
            self._token(deployment_id).set()
            return True
        return False

    def wait(self, deployment_id: str, timeout: float) -> DeploymentRecord:
        deadline = time.monotonic() + timeout
        while True:
            record = self.journal.get(deployment_id)
            remaining = deadline - time.monotonic()
            if record.is_final or record.status == DeploymentStatus.AWAITING_REVIEW or remaining <= 0:
                return record
            with self._changed:
                self._changed.wait(timeout=min(remaining, 0.5))

    def shutdown(self, wait: bool = False) -> None:
        self._stopping.set()
        with self._due_changed:
            self._due_changed.notify_all()
        self._executor.shutdown(wait=wait, cancel_futures=True)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    # ---- running -------------------------------------------------------------------------------

    def _run_guarded(self, deployment_id: str) -> None:
        try:
            self.run(deployment_id)
        except Exception:  # pragma: no cover - last resort, run() records its own failures
            log.exception("deployment %s crashed the orchestrator", deployment_id)
        finally:
            self._notify()

    def run(self, deployment_id: str) -> DeploymentRecord:
        record = self.journal.get(deployment_id)
        if record.is_final:  # a late look of a wait whose deploy was cancelled meanwhile
            return record
        pipeline = self.pipelines[record.kind]
        for step in pipeline.steps:
            if self._stopping.is_set():
                return self.journal.get(deployment_id)
            if self.cancel_requested(deployment_id):
                return self._finish_cancel(deployment_id, pipeline)
            step_record = record.step(step.name)
            if step_record is not None and step_record.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
                continue
            self._current_step[deployment_id] = step
            try:
                ok = self._run_step(record, step)
            finally:
                self._current_step.pop(deployment_id, None)
            if ok is CANCELLED or (ok is not True and self.cancel_requested(deployment_id)):
                return self._finish_cancel(deployment_id, pipeline)
            record = self.journal.get(deployment_id)
            if ok is YIELDED or not ok:
                return record
        if self.cancel_requested(deployment_id):
            return self._finish_cancel(deployment_id, pipeline)
        # A step may end the deploy otherwise than its pipeline usually ends (an aborted canary is
        # ``rolled_back``); it says so in its outputs, so a restart ends it the same way.
        final_status = self.journal.get(deployment_id).outputs.get(FINAL_STATUS) or pipeline.final_status
        self.journal.set_status(deployment_id, final_status, clear_error=True, finished=True)
        self._notify()
        return self.journal.get(deployment_id)

    def _run_step(self, record: DeploymentRecord, step: Step) -> bool | str:
        deployment_id = record.id
        attempt = 0
        while True:
            attempt += 1
            if deployment_id in self._polling:
                self._polling.discard(deployment_id)  # the next look of a wait, not a new attempt
            else:
                self.journal.set_status(deployment_id, step.status_label)
                self.journal.step_started(deployment_id, step.name)
                self._notify()
            deployment = self.journal.get(deployment_id)
            ctx = self._context(deployment, step.name, cancelled=lambda: self.cancel_requested(deployment_id))
            try:
                result = step.run(ctx)
                if self.cancel_requested(deployment_id):
                    # What it made is undone by the cancel; its outputs are kept so the undo finds it.
                    ctx.flush_log()
                    if not isinstance(result, NotYet):
                        self.journal.step_progress(deployment_id, step.name, result.outputs)
                    return CANCELLED
                if isinstance(result, NotYet):
                    ctx.flush_log()
                    self.journal.step_waiting(deployment_id, step.name, result.message, result.progress)
                    self._polling.add(deployment_id)
                    self._look_again(deployment_id, result.retry_after)
                    return YIELDED
            except MlopsError as exc:
                ctx.flush_log()
                if self.cancel_requested(deployment_id):
                    return CANCELLED  # the step stopped because of the cancel: that is not a failure
                transient = isinstance(exc, TransientError)
                if isinstance(exc, DeploymentTimedOut):
                    self._fail(deployment_id, step, exc, ctx, DeploymentStatus.TIMED_OUT)
                    return False
                if transient and attempt < step.max_attempts and not self._stopping.is_set():
                    self.journal.step_finished(
                        deployment_id,
                        step.name,
                        StepStatus.FAILED,
                        message=f"attempt {attempt} failed, retrying: {exc.message}",
                        log_tail=ctx.log_tail(),
                    )
                    # The wait before the next attempt ends early when the deploy is cancelled.
                    if self._token(deployment_id).wait(self.retry_base_delay * 2 ** (attempt - 1)):
                        return CANCELLED
                    continue
                if transient:
                    exc.message = f"{exc.message} (gave up after {attempt} attempts; retry the deployment to resume)"
                self._fail(deployment_id, step, exc, ctx, DeploymentStatus.FAILED)
                return False
            except Exception as exc:  # an unexpected bug: record it, never lose the deploy silently
                ctx.flush_log()
                if self.cancel_requested(deployment_id):
                    return CANCELLED  # e.g. ``Cancelled`` raised by a step that noticed the token
                log.exception("step %s of %s raised", step.name, deployment_id)
                wrapped = MlopsError(
                    f"{type(exc).__name__}: {exc}",
                    code="internal_error",
                    details={"traceback": traceback.format_exc(limit=5)},
                )
                self._fail(deployment_id, step, wrapped, ctx, DeploymentStatus.FAILED)
                return False
            ctx.flush_log()
            self._fault_halt(step.name, "halt_before_recording_step")
            self.journal.step_finished(
                deployment_id,
                step.name,
                StepStatus.SUCCEEDED,
                message=result.message,
                outputs=result.outputs,
                log_tail=ctx.log_tail() or None,
            )
            self._fault_halt(step.name, "halt_after_step")
            self._notify()
            return True

    def _context(
        self, deployment: DeploymentRecord, step_name: str, cancelled: Callable[[], bool] = never_cancelled
    ) -> StepContext:
        """What a step sees: the earlier steps' outputs and its own saved progress (an interrupted
        attempt's MLflow run, a wait's deadline), as the journal holds them."""
        return StepContext(
            deployment=deployment,
            outputs=deployment.outputs_through(step_name),
            settings=self.settings,
            journal=self.journal,
            step_name=step_name,
            log_tail_lines=self.settings.training.log_tail_lines,
            cancelled=cancelled,
        )

    def _finish_cancel(self, deployment_id: str, pipeline: Pipeline) -> DeploymentRecord:
        """Undo what the deploy made, latest step first, then end ``cancelled``. A clean-up that
        fails leaves the deployment ``cancelling`` and is tried again shortly (and after a restart)."""
        record = self.journal.get(deployment_id)
        problems: list[str] = []
        for step in reversed(pipeline.steps):
            step_record = record.step(step.name)
            if step_record is None or (step_record.status == StepStatus.PENDING and not step_record.outputs):
                continue
            if not isinstance(step, Discardable):
                continue
            ctx = self._context(record, step.name)
            try:
                step.discard(ctx)
            except Exception as exc:
                log.exception("undoing step %s of cancelled %s failed", step.name, deployment_id)
                problems.append(f"{step.name}: {exc}")
            finally:
                ctx.flush_log()
        if problems:
            self.journal.add_log(deployment_id, "cancel", [f"clean-up failed, trying again: {p}" for p in problems])
            if not self._stopping.is_set():
                self._look_again(deployment_id, CANCEL_RETRY_SECONDS)
            return self.journal.get(deployment_id)
        for step_record in record.steps:
            if step_record.status == StepStatus.RUNNING or (
                step_record.status == StepStatus.FAILED and step_record.finished_at is None
            ):
                self.journal.step_finished(
                    deployment_id, step_record.name, StepStatus.CANCELLED, message="cancelled", outputs=None
                )
        self.journal.set_status(deployment_id, DeploymentStatus.CANCELLED, finished=True)
        with self._lock:
            self._cancel_tokens.pop(deployment_id, None)
        self._polling.discard(deployment_id)
        self._notify()
        return self.journal.get(deployment_id)

    def _fault_halt(self, step_name: str, point: str) -> None:
        """Test-only fault injection (settings.faults, off by default): die like a crash, here."""
        if getattr(self.settings.faults, point) == step_name:
            log.warning("fault injection: %s=%s, the service kills itself now", point, step_name)
            os.kill(os.getpid(), signal.SIGKILL)

    def _fail(self, deployment_id: str, step: Step, exc: MlopsError, ctx: StepContext, status: str) -> None:
        self.journal.step_finished(
            deployment_id, step.name, StepStatus.FAILED, message=exc.message, log_tail=ctx.log_tail() or None
        )
        error = {"code": exc.code, "message": exc.message, "step": step.name, "details": exc.details}
        self.journal.set_status(deployment_id, status, error=error, finished=True)
        self._notify()
