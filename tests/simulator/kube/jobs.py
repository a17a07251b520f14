"""batch/v1 Jobs: the API server's defaults and validation for a Job, the Job controller and the TTL
controller, written from Kubernetes 1.32's documentation (concepts/workloads/controllers/job,
ttlafterfinished, garbage-collection) and the field descriptions of the batch/v1 API:

- defaults (``SetDefaults_Job``): ``completions`` and ``parallelism`` 1, ``backoffLimit`` 6,
  ``completionMode: NonIndexed``, ``suspend: false``, ``podReplacementPolicy: TerminatingOrFailed``;
  the generated selector ``batch.kubernetes.io/controller-uid=<uid>`` and the pod template labels
  ``batch.kubernetes.io/controller-uid``, ``batch.kubernetes.io/job-name``, ``controller-uid``, ``job-name``;
- validation: the template's ``restartPolicy`` must be ``Never`` or ``OnFailure``; a selector without
  ``manualSelector: true`` is refused (it is generated);
- the controller: one pod at a time up to ``completions`` (``<job>-<5 chars>``, controlled by the Job),
  ``startTime`` on the first sync, counts ``active``/``ready``/``terminating``/``succeeded``/``failed``;
  a failed pod is replaced after a back-off (10 s doubling, capped at 6 min) until ``failed >
  backoffLimit``; the terminal conditions of 1.31+: first ``FailureTarget`` (reason
  ``BackoffLimitExceeded`` or ``DeadlineExceeded``, after ``activeDeadlineSeconds`` from
  ``startTime``) or ``SuccessCriteriaMet`` (reason ``CompletionsReached``), then the remaining pods are
  terminated and, once none is left, ``Failed`` or ``Complete`` with the same reason (and
  ``completionTime`` on success); events ``SuccessfulCreate``, ``DeadlineExceeded``,
  ``BackoffLimitExceeded``, ``Completed``;
- the TTL controller: a finished Job is deleted ``ttlSecondsAfterFinished`` after its terminal
  condition, with foreground propagation (its pods go with it).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from tests.simulator.kube.controllers import condition, is_pod_ready, owner_reference, qos_class
from tests.simulator.kube.events import EventRecorder
from tests.simulator.kube.store import KubeError, Store, default_pod_spec, now_rfc3339, parse_rfc3339, random_suffix

JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_JOB_NAME_LABEL = "job-name"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
POD_FAILURE_BACKOFF_SECONDS = 10.0
POD_FAILURE_BACKOFF_MAX_SECONDS = 360.0
DEADLINE_EXCEEDED_MESSAGE = "Job was active longer than specified deadline"
BACKOFF_LIMIT_MESSAGE = "Job has reached the specified backoff limit"
COMPLETIONS_REACHED_MESSAGE = "Reached expected number of succeeded pods"
COMPONENT = "job-controller"


def validate_job(job: dict) -> None:
    """The batch/v1 Job rules the schema cannot express (ValidateJob / the job strategy)."""
    name = job["metadata"].get("name", "")
    spec = job.get("spec") or {}
    template_spec = (spec.get("template") or {}).get("spec") or {}
    restart_policy = template_spec.get("restartPolicy")
    if restart_policy not in ("Never", "OnFailure"):
        shown = f'"{restart_policy}"' if restart_policy else '""'
        raise KubeError(
            422,
            "Invalid",
            f'Job.batch "{name}" is invalid: spec.template.spec.restartPolicy: Unsupported value: {shown}: '
            'supported values: "OnFailure", "Never"',
        )
    if spec.get("selector") and not spec.get("manualSelector"):
        raise KubeError(
            422,
            "Invalid",
            f'Job.batch "{name}" is invalid: spec.selector: Invalid value: {spec["selector"]}: '
            "`selector` will be auto-generated",
        )
    for field_name in ("backoffLimit", "activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        value = spec.get(field_name)
        if value is not None and value < (1 if field_name == "activeDeadlineSeconds" else 0):
            bound = (
                "must be greater than 0"
                if field_name == "activeDeadlineSeconds"
                else "must be greater than or equal to 0"
            )
            raise KubeError(
                422, "Invalid", f'Job.batch "{name}" is invalid: spec.{field_name}: Invalid value: {value}: {bound}'
            )


def default_job(job: dict, uid: str) -> None:
    """SetDefaults_Job plus the selector and template labels the job strategy generates on create."""
    spec = job.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    spec.setdefault("manualSelector", None)
    if spec["manualSelector"] is None:
        del spec["manualSelector"]
    name = job["metadata"]["name"]
    template = spec.setdefault("template", {})
    labels = template.setdefault("metadata", {}).setdefault("labels", {})
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {CONTROLLER_UID_LABEL: uid}}
        labels.update(
            {
                CONTROLLER_UID_LABEL: uid,
                JOB_NAME_LABEL: name,
                LEGACY_CONTROLLER_UID_LABEL: uid,
                LEGACY_JOB_NAME_LABEL: name,
            }
        )
    default_pod_spec(template.setdefault("spec", {}))


@dataclass
class _JobTracking:
    """What the controller tracks per Job between passes (the real one uses pod finalizers for this)."""

    counted_succeeded: set[str] = field(default_factory=set)
    counted_failed: set[str] = field(default_factory=set)
    next_pod_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None


class JobController:
    def __init__(
        self,
        store: Store,
        events: EventRecorder,
        *,
        delete: Callable[..., bool],
        backoff_scale: float = 0.1,
    ) -> None:
        """``backoff_scale`` multiplies the pod-failure back-off (10 s doubling), like the kubelet's
        ``probe_period_scale``; deadlines and TTLs are not scaled (tests choose small ones)."""
        self.store = store
        self.events = events
        self.delete = delete
        self.backoff_scale = backoff_scale
        self._tracking: dict[str, _JobTracking] = {}

    def run_once(self) -> None:
        with self.store.lock:
            jobs = [copy.deepcopy(job) for job in self.store.list_refs("Job")]
        live = {job["metadata"]["uid"] for job in jobs}
        for uid in [uid for uid in self._tracking if uid not in live]:
            del self._tracking[uid]
        for job in jobs:
            self.sync_job(job)

    def _pods_of(self, job: dict) -> list[dict]:
        uid = job["metadata"]["uid"]
        return [
            pod
            for pod in self.store.list("Pod", job["metadata"]["namespace"])
            if any(
                ref.get("uid") == uid and ref.get("controller") for ref in pod["metadata"].get("ownerReferences") or []
            )
        ]

    def sync_job(self, job: dict) -> None:
        metadata = job["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        tracking = self._tracking.setdefault(metadata["uid"], _JobTracking())
        status = copy.deepcopy(job.get("status") or {})
        conditions: list[dict] = status.get("conditions") or []
        if "deletionTimestamp" in metadata:
            if "foregroundDeletion" in (metadata.get("finalizers") or []) and not self.store.owned_by(metadata["uid"]):
                self.store.remove("Job", namespace, name)
            return
        finished = next((c for c in conditions if c["type"] in ("Complete", "Failed") and c["status"] == "True"), None)
        if finished is not None:
            self._expire(job, tracking)
            return
        spec = job["spec"]
        now = time.time()
        pods = self._pods_of(job)
        for pod in pods:
            phase = (pod.get("status") or {}).get("phase")
            if phase == "Succeeded":
                tracking.counted_succeeded.add(pod["metadata"]["uid"])
            elif phase == "Failed":
                tracking.counted_failed.add(pod["metadata"]["uid"])
        terminal_uids = tracking.counted_succeeded | tracking.counted_failed
        active = [
            pod
            for pod in pods
            if "deletionTimestamp" not in pod["metadata"] and pod["metadata"]["uid"] not in terminal_uids
        ]
        terminating = [
            pod
            for pod in pods
            if "deletionTimestamp" in pod["metadata"] and pod["metadata"]["uid"] not in terminal_uids
        ]
        if spec.get("suspend"):
            return
        if "startTime" not in status:
            status["startTime"] = now_rfc3339()
            tracking.next_pod_at = now
            tracking.started_at = now
        target = next(
            (c for c in conditions if c["type"] in ("FailureTarget", "SuccessCriteriaMet") and c["status"] == "True"),
            None,
        )
        if target is None:
            deadline = spec.get("activeDeadlineSeconds")
            started = tracking.started_at or parse_rfc3339(status["startTime"])
            if deadline is not None and now - started >= deadline:
                target = self._condition("FailureTarget", "DeadlineExceeded", DEADLINE_EXCEEDED_MESSAGE)
                self.events.record(job, "Warning", "DeadlineExceeded", DEADLINE_EXCEEDED_MESSAGE, component=COMPONENT)
            elif len(tracking.counted_failed) > spec.get("backoffLimit", 6):
                target = self._condition("FailureTarget", "BackoffLimitExceeded", BACKOFF_LIMIT_MESSAGE)
                self.events.record(job, "Warning", "BackoffLimitExceeded", BACKOFF_LIMIT_MESSAGE, component=COMPONENT)
            elif len(tracking.counted_succeeded) >= spec.get("completions", 1):
                target = self._condition("SuccessCriteriaMet", "CompletionsReached", COMPLETIONS_REACHED_MESSAGE)
            if target is not None:
                conditions = [*conditions, target]
        if target is not None:
            # The pods still running are terminated; the terminal condition waits until none is left.
            for pod in active:
                self.delete("Pod", namespace, pod["metadata"]["name"])
            if not active and not terminating:
                final_type = "Failed" if target["type"] == "FailureTarget" else "Complete"
                conditions = [*conditions, self._condition(final_type, target["reason"], target["message"])]
                tracking.finished_at = now
                if final_type == "Complete":
                    status["completionTime"] = now_rfc3339()
                    self.events.record(job, "Normal", "Completed", "Job completed", component=COMPONENT)
            active, terminating = [], active + terminating
        else:
            wanted = spec.get("completions", 1) - len(tracking.counted_succeeded)
            if len(active) < min(spec.get("parallelism", 1), wanted) and now >= tracking.next_pod_at:
                self._create_pod(job)
                failures = len(tracking.counted_failed)
                delay = min(POD_FAILURE_BACKOFF_SECONDS * 2**failures, POD_FAILURE_BACKOFF_MAX_SECONDS)
                tracking.next_pod_at = now + delay * self.backoff_scale if failures else now
                active = self._pods_of(job)
                active = [pod for pod in active if pod["metadata"]["uid"] not in terminal_uids]
        status["conditions"] = conditions
        status["active"] = len(active)
        status["ready"] = sum(1 for pod in active if is_pod_ready(pod))
        status["terminating"] = len(terminating)
        status["succeeded"] = len(tracking.counted_succeeded)
        status["failed"] = len(tracking.counted_failed)
        status["uncountedTerminatedPods"] = {}
        # active, succeeded and failed are omitempty; ready and terminating are pointers (always shown).
        for key in ("active", "succeeded", "failed", "conditions"):
            if not status[key]:
                del status[key]
        self.store.write_status("Job", namespace, name, status)

    @staticmethod
    def _condition(condition_type: str, reason: str, message: str) -> dict:
        now = now_rfc3339()
        return {
            "type": condition_type,
            "status": "True",
            "reason": reason,
            "message": message,
            "lastProbeTime": now,
            "lastTransitionTime": now,
        }

    def _create_pod(self, job: dict) -> None:
        template = copy.deepcopy(job["spec"]["template"])
        job_name = job["metadata"]["name"]
        pod_name = f"{job_name}-{random_suffix()}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "generateName": f"{job_name}-",
                "namespace": job["metadata"]["namespace"],
                "labels": template.get("metadata", {}).get("labels", {}),
                "ownerReferences": [owner_reference(job)],
            },
            "spec": template.get("spec", {}),
        }
        if template.get("metadata", {}).get("annotations"):
            pod["metadata"]["annotations"] = template["metadata"]["annotations"]
        self.store.put(pod)
        self.store.write_status(
            "Pod", pod["metadata"]["namespace"], pod_name, {"phase": "Pending", "qosClass": qos_class(pod["spec"])}
        )
        self.events.record(job, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}", component=COMPONENT)

    def _expire(self, job: dict, tracking: _JobTracking) -> None:
        """The TTL-after-finished controller."""
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        finished_at = tracking.finished_at
        if finished_at is None:
            final = next(c for c in job["status"]["conditions"] if c["type"] in ("Complete", "Failed"))
            finished_at = tracking.finished_at = parse_rfc3339(final["lastTransitionTime"])
        if time.time() >= finished_at + ttl:
            self.delete("Job", job["metadata"]["namespace"], job["metadata"]["name"], propagation_policy="Foreground")


def job_finished_condition(job: dict) -> dict | None:
    return condition((job.get("status") or {}).get("conditions") or [], "Complete") or condition(
        (job.get("status") or {}).get("conditions") or [], "Failed"
    )
