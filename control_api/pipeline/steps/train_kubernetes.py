"""Step ``train`` of the ``kubernetes`` training backend: the script runs as a Kubernetes Job.

The step creates the MLflow experiment and run as the local one does, builds and pushes the training
image (reused by its requirements key), starts the Job with the run's id and the remote tracking URI,
and then answers ``NotYet`` on every look until the Job has ended: no worker is held while it runs.
Each stage saves its result as progress before the next begins, so a restarted service picks up where
it stopped: it re-uses the run and the image and ``start`` re-attaches to the Job by its label, so a
deploy never gets a second Job, run or version. A retry of a failed deploy clears the saved run
(a ``poll_`` output) and trains again in a new run and a new Job. A failed Job is a terminal error naming its cause
(``OOMKilled``, ``DeadlineExceeded``, ...) and is deleted with its pods; ``cancel`` does the same on
request. The pod's log goes to the journal (and so the event stream) as it comes, and to a file kept
as the run's ``logs`` artifact when the training ends.
"""

from __future__ import annotations

import base64
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any, cast

from control_api.adapters.image_builder.base import ImageBuilder
from control_api.adapters.image_builder.layers import LayerEngine
from control_api.adapters.mlflow_store.gateway import MlflowGateway
from control_api.adapters.registry.base import ImageRegistry
from control_api.errors import MlopsError, TrainingFailed
from control_api.journal.store import Journal
from control_api.pipeline.outputs import RUN_ID
from control_api.pipeline.step import NotYet, StepContext, StepResult
from control_api.pipeline.steps.train import close_cancelled_run, create_deploy_run, finish_run
from control_api.provider import Provider
from control_api.settings import Settings
from control_api.training.backends.base import (
    TrainingBackend,
    TrainingOutcome,
    TrainingRequest,
    TrainingResources,
    TrainingState,
)
from control_api.training.backends.training_image import build_training_image

TRAINING_IMAGE = "training_image"  # the image the Job runs, by digest
# The run of this attempt: kept across restarts (the Job logs to it), cleared by a retry, which then
# trains in a new run.
POLL_RUN_ID = "poll_run_id"
POLL_EXPERIMENT_ID = "poll_experiment_id"
POLL_EXPERIMENT_NAME = "poll_experiment_name"
LOOK_AGAIN_SECONDS = 2.0
# Variables only the service sets: a script's environment_vars cannot redirect its tracking.
SERVICE_VARIABLES = ("MLFLOW_TRACKING_", "MLFLOW_REGISTRY_", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID")


def requested_resources(request: dict[str, Any]) -> TrainingResources:
    """The ``training`` field of a journaled deploy request (absent: the backend's defaults)."""
    asked = request.get("training") or {}
    return TrainingResources(
        cpu=asked.get("cpu"),
        memory=asked.get("memory"),
        gpu=int(asked.get("gpu") or 0),
        timeout_seconds=asked.get("timeout_seconds"),
    )


class PodLog:
    """Where a training pod's log lines go: the deploy's journal (its event stream) and a file that
    becomes the run's artifact. Called from the backend's log-following thread.

    After a restart the backend follows the pod's log from its first line again. The file holds what
    an earlier process already passed on, so that many replayed lines are skipped: the journal and
    the file get each line once."""

    def __init__(self, journal: Journal, deployment_id: str, step_name: str, path: Path) -> None:
        self._journal = journal
        self._deployment_id = deployment_id
        self._step_name = step_name
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open(encoding="utf-8", errors="replace", newline="\n") as file:
                self._replayed = sum(1 for _ in file)
        except FileNotFoundError:
            self._replayed = 0

    def __call__(self, line: str) -> None:
        with self._lock:
            if self._replayed > 0:
                self._replayed -= 1
                return
            with self.path.open("a", encoding="utf-8") as file:
                file.write(line + "\n")
            self._journal.add_log(self._deployment_id, self._step_name, [line])


class KubernetesTrainStep:
    name = "train"
    status_label = "training"
    max_attempts = 3

    def __init__(
        self,
        mlflow: Provider[MlflowGateway],
        backend: Provider[TrainingBackend | None],
        image_builder: Provider[ImageBuilder],
        registry: Provider[ImageRegistry],
    ) -> None:
        self.mlflow = mlflow
        self.backend = backend
        self.image_builder = image_builder
        self.registry = registry
        self._started: set[str] = set()  # deployments whose Job this process has started or re-attached to
        self._lock = threading.Lock()

    def _backend(self) -> TrainingBackend:
        backend = self.backend()
        if backend is None:
            raise RuntimeError("the kubernetes train step needs the kubernetes training backend")
        return backend

    def cancel(self, deployment_id: str, outputs: dict[str, Any] | None = None) -> None:
        """Stop the deployment's training: its Job and pods are deleted (idempotent)."""
        self._backend().cancel(deployment_id)
        with self._lock:
            self._started.discard(deployment_id)

    def discard(self, ctx: StepContext) -> None:
        """A cancelled deploy's Job is deleted (again: a crash mid-cancel may have left it) and its run
        stays in the experiment as history, ``KILLED`` if it was still running and tagged
        ``mlops.cancelled``."""
        self.cancel(ctx.deployment_id, ctx.outputs)
        run_id = ctx.outputs.get(RUN_ID) or ctx.outputs.get(POLL_RUN_ID)
        if run_id:
            close_cancelled_run(self.mlflow(), run_id)
            ctx.log(f"run {run_id} closed and its training Job deleted: the deploy was cancelled")

    def run(self, ctx: StepContext) -> StepResult | NotYet:
        gateway = self.mlflow()
        run_id, experiment_id, experiment_name = self._ensure_run(ctx, gateway)
        image = ctx.outputs.get(TRAINING_IMAGE) or self._build_image(ctx)
        backend = self._backend()
        log_path = _log_path(ctx.settings, ctx.deployment_id, run_id)
        with self._lock:
            start = ctx.deployment_id not in self._started
        if start:
            env, secret_env = _pod_environment(ctx, run_id, experiment_id)
            request = TrainingRequest(
                deployment_id=ctx.deployment_id,
                image=image,
                script=base64.b64decode(ctx.request["script_content"]).decode("utf-8"),
                env=env,
                secret_env=secret_env,
                resources=requested_resources(ctx.request),
            )
            backend.start(request, PodLog(ctx.journal, ctx.deployment_id, self.name, log_path))
            with self._lock:
                self._started.add(ctx.deployment_id)
            ctx.log(f"training Job started for run {run_id} with image {image}")
        outcome = backend.look(ctx.deployment_id)
        if not outcome.finished:
            return NotYet(LOOK_AGAIN_SECONDS, "training Job running")
        with self._lock:
            self._started.discard(ctx.deployment_id)
        self._keep_log(gateway, run_id, log_path)
        if outcome.state is TrainingState.FAILED:
            self._fail(ctx, gateway, backend, run_id, outcome)
        model, outputs = finish_run(gateway, run_id, experiment_id, experiment_name)
        return StepResult(
            {**outputs, TRAINING_IMAGE: image},
            f"run {run_id} logged model {model.name!r} in a Kubernetes Job",
        )

    def _ensure_run(self, ctx: StepContext, gateway: MlflowGateway) -> tuple[str, str, str]:
        """The run of an earlier attempt when it may still be training, else a new one."""
        run_id = ctx.outputs.get(POLL_RUN_ID)
        if run_id:
            return run_id, ctx.outputs[POLL_EXPERIMENT_ID], ctx.outputs[POLL_EXPERIMENT_NAME]
        experiment_name, experiment_id, run_id = create_deploy_run(
            gateway, ctx, source_type="JOB", extra_tags={"mlops.training_backend": "kubernetes"}
        )
        ctx.save_progress(
            **{POLL_RUN_ID: run_id, POLL_EXPERIMENT_ID: experiment_id, POLL_EXPERIMENT_NAME: experiment_name}
        )
        ctx.log(f"MLflow run {run_id} in experiment {experiment_name!r}")
        return run_id, experiment_id, experiment_name

    def _build_image(self, ctx: StepContext) -> str:
        settings = ctx.settings
        engine = self.image_builder()
        ensure_base_image = getattr(engine, "ensure_base_image", None)
        if ensure_base_image is not None:  # a builder with its own image storage pulls the base image first
            ensure_base_image(ctx.log)
        image = build_training_image(
            cast(LayerEngine, engine),  # every builder kind builds its layers through LayerEngine
            self.registry(),
            settings.build,
            settings.registry.repository_prefix,
            python=settings.training.python,
            user_requirements=ctx.request.get("requirements") or [],
            on_log=ctx.log,
        )
        ctx.save_progress(training_image=image.reference)
        return image.reference

    def _fail(
        self,
        ctx: StepContext,
        gateway: MlflowGateway,
        backend: TrainingBackend,
        run_id: str,
        outcome: TrainingOutcome,
    ) -> None:
        try:
            gateway.set_run_status(run_id, "FAILED")
        finally:
            # The Job ends with its deploy: a retry starts a new Job (and run) instead of re-attaching.
            backend.cancel(ctx.deployment_id)
        raise TrainingFailed(
            f"the training Job failed ({outcome.reason}): {outcome.message}",
            details={RUN_ID: run_id, "reason": outcome.reason},
        )

    def _keep_log(self, gateway: MlflowGateway, run_id: str, path: Path) -> None:
        from control_api.redaction import redact_file

        if path.exists():
            redact_file(path)  # a script may print its environment: MLflow's URI can carry a password
            with suppress(MlopsError):  # the training's outcome is the news; its log is still in the journal
                gateway.log_artifact(run_id, path, "logs")


def _log_path(settings: Settings, deployment_id: str, run_id: str) -> Path:
    return settings.data_path / "work" / deployment_id / f"{run_id}.pod.log"


def _pod_environment(ctx: StepContext, run_id: str, experiment_id: str) -> tuple[dict[str, str], dict[str, str]]:
    """The pod's plain variables, and those that may carry credentials: the tracking URI (it can hold
    a password) and the request's own ``environment_vars`` (often API keys). The second set reaches
    the pod through a Secret, not the Job's spec."""
    plain = {
        "MLFLOW_RUN_ID": run_id,
        "MLFLOW_EXPERIMENT_ID": experiment_id,
        "MLOPS_SERVICE_RUN": "1",
        "USER": "mlops-training",
        "LOGNAME": "mlops-training",
    }
    user = {
        name: value
        for name, value in (ctx.request.get("environment_vars") or {}).items()
        if not name.startswith(SERVICE_VARIABLES) and name not in plain
    }
    tracking_uri = ctx.settings.mlflow.tracking_uri or ""
    secret = {**user, "MLFLOW_TRACKING_URI": tracking_uri, "MLFLOW_REGISTRY_URI": tracking_uri}
    return plain, secret
