"""Walks a deployment's steps in order, persisting each step's state and outputs in the journal.

Transient errors are retried with backoff inside the step's attempt budget; terminal errors fail the
deploy at once. ``DeploymentTimedOut`` ends in ``timed_out``, which a retry resumes. On start the
service calls ``resume_unfinished`` and every deploy that was running when it stopped continues from
its first unfinished step.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from control_api.errors import DeploymentTimedOut, MlopsError, TransientError, ConflictError
from control_api.journal.store import DeploymentRecord, DeploymentStatus, Journal, StepStatus
from control_api.pipeline.step import Step, StepContext

if TYPE_CHECKING:
    from control_api.services import Services

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pipeline:
    kind: str  # deploy | rollback | undeploy
    steps: tuple[Step, ...]
    final_status: str

    @property
    def step_names(self) -> list[str]:
        return [s.name for s in self.steps]


class Orchestrator:
    def __init__(self, journal: Journal, services: "Services", pipelines: dict[str, Pipeline], workers: int = 8) -> None:
        self.journal = journal
        self.services = services
        self.pipelines = pipelines
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deploy")
        self._running: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self.retry_base_delay = 1.0

    # ---- scheduling ----------------------------------------------------------------------------

    def start(self, deployment_id: str) -> None:
        with self._lock:
            if deployment_id in self._running and not self._running[deployment_id].done():
                return
            self._running[deployment_id] = self._executor.submit(self._run_guarded, deployment_id)

    def resume_unfinished(self) -> list[str]:
        resumed = []
        for record in self.journal.unfinished():
            if record.status == DeploymentStatus.AWAITING_REVIEW or record.kind in self.pipelines:
                log.info("resuming deployment %s (%s) at status %s", record.id, record.model_name, record.status)
                self.start(record.id)
                resumed.append(record.id)
        return resumed

    def retry(self, deployment_id: str) -> DeploymentRecord:
        record = self.journal.get(deployment_id)
        if record.status not in (DeploymentStatus.FAILED, DeploymentStatus.TIMED_OUT):
            raise ConflictError(
                f"deployment {deployment_id} is {record.status}; only failed or timed_out deployments can be retried",
                code="not_retryable",
            )
        # The same rule as a new deploy: a newer deploy may have started since this one failed, and
        # retrying now would run both against the same GitOps path.
        self.journal.refuse_if_busy(record.model_name, record.namespace)
        first_unfinished = next((s.name for s in record.steps if s.status != StepStatus.SUCCEEDED), None)
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
        outputs: dict[str, Any] = {}
        for step in pipeline.steps:
            if self._stopping.is_set():
                return self.journal.get(deployment_id)
            step_record = record.step(step.name)
            if step_record is not None and step_record.status in (StepStatus.SUCCEEDED, StepStatus.SKIPPED):
                outputs.update(step_record.outputs)
                continue
            if step_record is not None:
                # Partial progress of an interrupted attempt (e.g. the MLflow run it created).
                outputs.update(step_record.outputs)
            ok = self._run_step(record, step, outputs)
            record = self.journal.get(deployment_id)
            if not ok:
                return record
        self.journal.set_status(deployment_id, pipeline.final_status, clear_error=True, finished=True)
        self._notify()
        return self.journal.get(deployment_id)

    def _run_step(self, record: DeploymentRecord, step: Step, outputs: dict[str, Any]) -> bool:
        deployment_id = record.id
        attempt = 0
        while True:
            attempt += 1
            self.journal.set_status(deployment_id, step.status_label)
            self.journal.step_started(deployment_id, step.name)
            self._notify()
            ctx = StepContext(
                deployment=self.journal.get(deployment_id),
                outputs=dict(outputs),
                services=self.services,
                journal=self.journal,
                step_name=step.name,
                log_tail_lines=self.services.settings.training.log_tail_lines,
            )
            try:
                step_outputs = step.run(ctx) or {}
            except MlopsError as exc:
                ctx.flush_log()
                transient = isinstance(exc, TransientError)
                if isinstance(exc, DeploymentTimedOut):
                    self._fail(deployment_id, step, exc, ctx, DeploymentStatus.TIMED_OUT)
                    return False
                if transient and attempt < step.max_attempts and not self._stopping.is_set():
                    self.journal.step_finished(
                        deployment_id, step.name, StepStatus.FAILED,
                        message=f"attempt {attempt} failed, retrying: {exc.message}",
                        log_tail=ctx.log_tail(),
                    )
                    outputs.update(ctx.outputs)
                    time.sleep(self.retry_base_delay * 2 ** (attempt - 1))
                    continue
                if transient:
                    exc.message = f"{exc.message} (gave up after {attempt} attempts; retry the deployment to resume)"
                self._fail(deployment_id, step, exc, ctx, DeploymentStatus.FAILED)
                return False
            except Exception as exc:  # an unexpected bug: record it, never lose the deploy silently
                ctx.flush_log()
                log.exception("step %s of %s raised", step.name, deployment_id)
                wrapped = MlopsError(f"{type(exc).__name__}: {exc}", code="internal_error", details={"traceback": traceback.format_exc(limit=5)})
                self._fail(deployment_id, step, wrapped, ctx, DeploymentStatus.FAILED)
                return False
            ctx.flush_log()
            self._fault_halt(step.name, "halt_before_recording_step")
            # Keys starting with "_" are for the step record only (its message), never outputs.
            message = step_outputs.get("_message")
            step_outputs = {k: v for k, v in step_outputs.items() if not k.startswith("_")}
            outputs.update(ctx.outputs)
            outputs.update(step_outputs)
            self.journal.step_finished(
                deployment_id, step.name, StepStatus.SUCCEEDED,
                message=message, outputs=step_outputs,
                log_tail=ctx.log_tail() or None,
            )
            self._fault_halt(step.name, "halt_after_step")
            self._notify()
            return True

    def _fault_halt(self, step_name: str, point: str) -> None:
        """Test-only fault injection (settings.faults, off by default): die like a crash, here."""
        if getattr(self.services.settings.faults, point) == step_name:
            log.warning("fault injection: %s=%s, the service kills itself now", point, step_name)
            os.kill(os.getpid(), signal.SIGKILL)

    def _fail(self, deployment_id: str, step: Step, exc: MlopsError, ctx: StepContext, status: str) -> None:
        self.journal.step_finished(
            deployment_id, step.name, StepStatus.FAILED, message=exc.message, log_tail=ctx.log_tail() or None
        )
        error = {"code": exc.code, "message": exc.message, "step": step.name, "details": exc.details}
        self.journal.set_status(deployment_id, status, error=error, finished=True)
        self._notify()
