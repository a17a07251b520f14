"""Training as a Kubernetes Job: one Job per deployment, found again by its deployment-id label.

``start`` creates the Job (backoffLimit 0, restartPolicy Never, activeDeadlineSeconds from the
timeout, ttlSecondsAfterFinished, non-root pod without privilege escalation or service-account
token) and the script's ConfigMap (owned by the Job, so it goes with it), or re-attaches to the Job
a previous process created. ``look`` reads the Job and its pod once and names the cause of a
failure: the Job's ``DeadlineExceeded``/``BackoffLimitExceeded``, the container's termination reason
(``OOMKilled``), an image that cannot be pulled, a pod nobody can schedule. The pod's log is followed
in a thread and handed line by line to the caller's sink (from its first line, also after a
re-attach: the sink sees the lines a previous process saw again). A deadline, a pull failure, an
unschedulable pod and ``cancel`` delete the Job with its pods (background propagation; batch/v1's
default would orphan them).

A restarted service calls ``start`` again for a deploy it resumes: that re-attaches (or creates the
Job when the previous process stopped before creating it). ``look`` on a deployment whose Job is
gone reports ``Deleted`` unless this process already saw the training end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from control_api.settings import KubernetesTrainingSettings, Settings
from control_api.training.backends.base import LogSink, TrainingOutcome, TrainingRequest, TrainingState
from control_api.training.backends.job_manifest import (
    DEPLOYMENT_ID_LABEL,
    bound_resources,
    deployment_label_value,
    job_name,
    render_env_secret,
    render_job,
    render_script_config_map,
)
from control_api.training.backends.kubernetes_api import KubernetesApi, KubernetesApiError, KubernetesApiUnavailable

log = logging.getLogger(__name__)

IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"})
LOG_DRAIN_SECONDS = 10.0


@dataclass
class _Attachment:
    job_name: str
    on_log: LogSink | None
    follower: threading.Thread | None = None
    unschedulable_since: float | None = None
    outcome: TrainingOutcome | None = None


def _condition(obj: dict[str, Any], condition_type: str) -> dict[str, Any] | None:
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == condition_type and item.get("status") == "True":
            found: dict[str, Any] = item
            return found
    return None


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    status: dict[str, Any] = statuses[0]
    return status


class KubernetesTrainingBackend:
    def __init__(
        self,
        settings: KubernetesTrainingSettings,
        api: KubernetesApi,
        *,
        default_timeout_seconds: int,
        work_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._api = api
        self._default_timeout = default_timeout_seconds
        self._work_bytes = work_bytes
        self._clock = clock
        self._attached: dict[str, _Attachment] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> KubernetesTrainingBackend:
        training = settings.training
        api = KubernetesApi.from_settings(
            settings.kubernetes, timeout_seconds=training.kubernetes.request_timeout_seconds
        )
        return cls(
            training.kubernetes,
            api,
            default_timeout_seconds=int(training.timeout_seconds),
            work_bytes=training.workdir_bytes,
        )

    # ---- paths ----

    @property
    def _jobs(self) -> str:
        return f"/apis/batch/v1/namespaces/{self._settings.namespace}/jobs"

    @property
    def _pods(self) -> str:
        return f"/api/v1/namespaces/{self._settings.namespace}/pods"

    @property
    def _config_maps(self) -> str:
        return f"/api/v1/namespaces/{self._settings.namespace}/configmaps"

    @property
    def _secrets(self) -> str:
        return f"/api/v1/namespaces/{self._settings.namespace}/secrets"

    # ---- the interface ----

    def find_job(self, deployment_id: str) -> dict[str, Any] | None:
        """The deployment's Job, found by its label (not by name: the label is the contract)."""
        selector = f"{DEPLOYMENT_ID_LABEL}={deployment_label_value(deployment_id)}"
        jobs = [job for job in self._api.list(self._jobs, selector) if "deletionTimestamp" not in job["metadata"]]
        return jobs[0] if jobs else None

    def start(self, request: TrainingRequest, on_log: LogSink | None = None) -> None:
        resources = bound_resources(
            request.resources, self._settings, default_timeout_seconds=self._default_timeout
        )  # checked before anything is created: a refused request changes nothing
        job = self.find_job(request.deployment_id)
        if job is None:
            manifest = render_job(request, self._settings, resources, work_bytes=self._work_bytes)
            job = self._api.create(self._jobs, manifest) or self._api.get(
                f"{self._jobs}/{manifest['metadata']['name']}"
            )
            if job is None:
                raise KubernetesApiUnavailable(
                    f"training Job {manifest['metadata']['name']} vanished right after creation"
                )
            log.info("created training Job %s for deployment %s", job["metadata"]["name"], request.deployment_id)
        else:
            log.info("re-attached to training Job %s of deployment %s", job["metadata"]["name"], request.deployment_id)
        # Created after the Job (they are owned by it); a pod that starts first waits for its volume
        # and its environment (CreateContainerConfigError, retried by the kubelet).
        # On re-attach it may be missing when the previous process stopped in between: 409 is fine.
        self._api.create(
            self._config_maps, render_script_config_map(request, self._settings.namespace, job["metadata"]["uid"])
        )
        if request.secret_env:
            self._api.create(
                self._secrets, render_env_secret(request, self._settings.namespace, job["metadata"]["uid"])
            )
        with self._lock:
            self._attached[request.deployment_id] = _Attachment(job_name=job["metadata"]["name"], on_log=on_log)

    def look(self, deployment_id: str) -> TrainingOutcome:
        with self._lock:
            attachment = self._attached.setdefault(deployment_id, _Attachment(job_name(deployment_id), None))
        if attachment.outcome is not None:
            return attachment.outcome
        job = self._api.get(f"{self._jobs}/{attachment.job_name}")
        if job is None or "deletionTimestamp" in job["metadata"]:
            return self._finish(
                attachment,
                TrainingOutcome(TrainingState.FAILED, "Deleted", f"training Job {attachment.job_name} was deleted"),
            )
        pods = self._api.list(self._pods, f"batch.kubernetes.io/job-name={attachment.job_name}")
        pod = max(pods, key=lambda item: item["metadata"].get("creationTimestamp", ""), default=None)
        if pod is not None:
            self._follow_logs(attachment, pod)
        if _condition(job, "Complete") is not None:
            return self._finish(attachment, TrainingOutcome(TrainingState.SUCCEEDED))
        failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
        if failed is not None:
            return self._finish(attachment, self._failure(job, failed, pod))
        if pod is not None:
            stuck = self._stuck(attachment, pod)
            if stuck is not None:
                self._delete_job(attachment.job_name)
                return self._finish(attachment, stuck)
        return TrainingOutcome(TrainingState.RUNNING)

    def cancel(self, deployment_id: str) -> None:
        with self._lock:
            attachment = self._attached.get(deployment_id)
        name = attachment.job_name if attachment else job_name(deployment_id)
        found = self.find_job(deployment_id)
        if found is not None:
            name = found["metadata"]["name"]
        self._delete_job(name)
        if attachment is not None and attachment.outcome is None:
            attachment.outcome = TrainingOutcome(TrainingState.FAILED, "Cancelled", "the training was cancelled")

    def wait(self, deployment_id: str, *, timeout: float, poll_seconds: float = 0.5) -> TrainingOutcome:
        """Convenience for scripts and tests: ``look`` until the training ends or ``timeout`` passes."""
        deadline = self._clock() + timeout
        while True:
            outcome = self.look(deployment_id)
            if outcome.finished or self._clock() >= deadline:
                return outcome
            time.sleep(poll_seconds)

    # ---- causes ----

    def _failure(self, job: dict[str, Any], condition: dict[str, Any], pod: dict[str, Any] | None) -> TrainingOutcome:
        reason = condition.get("reason") or "Failed"
        if reason == "DeadlineExceeded":
            deadline = job["spec"].get("activeDeadlineSeconds")
            self._delete_job(job["metadata"]["name"])
            return TrainingOutcome(
                TrainingState.FAILED,
                "DeadlineExceeded",
                f"the training ran longer than its timeout of {deadline}s (DeadlineExceeded); its Job was deleted",
            )
        terminated = (_container_status(pod).get("state") or {}).get("terminated") if pod else None
        if terminated and terminated.get("reason") == "OOMKilled":
            limit = (
                job["spec"]["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {}).get("memory")
            )
            return TrainingOutcome(
                TrainingState.FAILED,
                "OOMKilled",
                f"the training was killed for using more than its memory limit of {limit} (OOMKilled, "
                f"exit code {terminated.get('exitCode')})",
            )
        if terminated:
            return TrainingOutcome(
                TrainingState.FAILED,
                reason,
                f"the training exited with code {terminated.get('exitCode')} "
                f"({terminated.get('reason')}; Job: {reason}: {condition.get('message', '')})",
            )
        return TrainingOutcome(
            TrainingState.FAILED, reason, f"training Job failed: {reason}: {condition.get('message', '')}"
        )

    def _stuck(self, attachment: _Attachment, pod: dict[str, Any]) -> TrainingOutcome | None:
        """A pod that will not run without someone changing something."""
        waiting = (_container_status(pod).get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in IMAGE_PULL_REASONS:
            return TrainingOutcome(
                TrainingState.FAILED,
                "ImagePullFailed",
                f"the training image cannot be pulled ({waiting['reason']}): {waiting.get('message', '')}".rstrip(": "),
            )
        scheduled = next(
            (item for item in (pod.get("status") or {}).get("conditions") or [] if item.get("type") == "PodScheduled"),
            None,
        )
        if scheduled is not None and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            now = self._clock()
            if attachment.unschedulable_since is None:
                attachment.unschedulable_since = now
            if now - attachment.unschedulable_since >= self._settings.unschedulable_grace_seconds:
                return TrainingOutcome(
                    TrainingState.FAILED,
                    "Unschedulable",
                    f"no node can run the training pod (Unschedulable): {scheduled.get('message', '')}",
                )
        else:
            attachment.unschedulable_since = None
        return None

    # ---- logs and clean-up ----

    def _follow_logs(self, attachment: _Attachment, pod: dict[str, Any]) -> None:
        if attachment.on_log is None or attachment.follower is not None:
            return
        state = _container_status(pod).get("state") or {}
        if "running" not in state and "terminated" not in state:
            return
        path = f"{self._pods}/{pod['metadata']['name']}/log"
        sink = attachment.on_log

        def follow() -> None:
            try:
                with self._api.follow_log(path) as lines:
                    for line in lines:
                        sink(line)
            except Exception:
                log.warning("following the log of %s failed", path, exc_info=True)

        attachment.follower = threading.Thread(target=follow, daemon=True, name=f"log-{attachment.job_name}")
        attachment.follower.start()

    def _finish(self, attachment: _Attachment, outcome: TrainingOutcome) -> TrainingOutcome:
        if attachment.follower is not None:
            attachment.follower.join(LOG_DRAIN_SECONDS)  # the stream ends with the container
        attachment.outcome = outcome
        return outcome

    def _delete_job(self, name: str) -> None:
        try:
            self._api.delete(f"{self._jobs}/{name}", propagation_policy="Background")
        except KubernetesApiError:
            log.warning("deleting training Job %s failed", name, exc_info=True)
            raise
