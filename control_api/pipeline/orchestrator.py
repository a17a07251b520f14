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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from control_api.errors import DeploymentTimedOut, MlopsError, TransientError
from control_api.journal.store import DeploymentRecord, DeploymentStatus, Journal, StepStatus
from control_api.pipeline.step import NotYet, Step, StepContext
from control_api.settings import Settings

log = logging.getLogger(__name__)

# _run_step's answers besides True (done) and False (failed).
YIELDED = "yielded"


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
        pipeline = self.pipelines[record.kind]
        for step in pipeline.steps:
            if self._stopping.is_set():
                return self.journal.get(deployment_id)
            step_record = record.step(step.name)
            if step_record is not None and step_record.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
                continue
            ok = self._run_step(record, step)
            record = self.journal.get(deployment_id)
            if ok is YIELDED or not ok:
                return record
        self.journal.set_status(deployment_id, pipeline.final_status, clear_error=True, finished=True)
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
            ctx = StepContext(
                deployment=deployment,
                # The earlier steps' outputs and this step's saved progress (an interrupted attempt's
                # MLflow run, a wait's deadline), as the journal holds them.
                outputs=deployment.outputs_through(step.name),
                settings=self.settings,
                journal=self.journal,
                step_name=step.name,
                log_tail_lines=self.settings.training.log_tail_lines,
            )
            try:
                result = step.run(ctx)
                if isinstance(result, NotYet):
                    ctx.flush_log()
                    self.journal.step_waiting(deployment_id, step.name, result.message, result.progress)
                    self._polling.add(deployment_id)
                    self._look_again(deployment_id, result.retry_after)
                    return YIELDED
            except MlopsError as exc:
                ctx.flush_log()
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
                    time.sleep(self.retry_base_delay * 2 ** (attempt - 1))
                    continue
                if transient:
                    exc.message = f"{exc.message} (gave up after {attempt} attempts; retry the deployment to resume)"
                self._fail(deployment_id, step, exc, ctx, DeploymentStatus.FAILED)
                return False
            except Exception as exc:  # an unexpected bug: record it, never lose the deploy silently
                ctx.flush_log()
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
