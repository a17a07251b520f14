"""The controllers of kube-controller-manager and kube-scheduler the simulator runs.

Written from the Kubernetes documentation (concepts/workloads/controllers/deployment, replicaset,
horizontal-pod-autoscale, disruptions, services-networking/service) and the algorithm the
Deployment controller documents in pkg/controller/deployment (rolling.go, progress.go, sync.go):
- Deployment -> one ReplicaSet per pod template, named ``<deployment>-<pod-template-hash>``;
  RollingUpdate scales the new ReplicaSet up to ``replicas + maxSurge`` pods in total and the old ones
  down while at least ``replicas - maxUnavailable`` pods are available; Recreate scales the old ones
  to zero and waits for their pods to be gone first; ``revisionHistoryLimit`` old ReplicaSets kept.
- Deployment status (replicas, updated, ready, available, unavailable; zero fields omitted as the Go
  types' ``omitempty`` does) and the ``Available`` and ``Progressing`` conditions, including
  ``ProgressDeadlineExceeded`` once ``progressDeadlineSeconds`` pass without progress.
- ReplicaSet -> Pods ``<replicaset>-<5 chars>``, available after ``minReadySeconds`` of Ready.
- The scheduler binds pods to the one node (or reports them Unschedulable under the fault).
- HPA (autoscaling/v2) keeps the target's replicas within [minReplicas, maxReplicas] and writes the
  AbleToScale / ScalingActive / ScalingLimited conditions; PDB (policy/v1) status.
- Namespace deletion: phase Terminating, contents deleted, then the Namespace is removed.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from collections.abc import Callable

from tests.simulator.kube.events import NODE_NAME, EventRecorder
from tests.simulator.kube.faults import KubeFaults
from tests.simulator.kube.store import (
    POD_NAME_ALPHABET,
    Store,
    now_rfc3339,
    parse_quantity,
    parse_rfc3339,
    random_suffix,
    selector_matches,
)

REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
UNSCHEDULABLE_MESSAGE = "0/1 nodes are available: 1 Insufficient cpu."
HPA_V1_CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"


def pod_template_hash(template: dict, collision_count: int = 0) -> str:
    """Stable hash of a pod template, encoded the way rand.SafeEncodeString encodes the FNV-32a sum."""
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":")) + str(collision_count)
    value = 0x811C9DC5
    for byte in hashlib.sha256(canonical.encode()).digest():
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return "".join(POD_NAME_ALPHABET[int(char) % len(POD_NAME_ALPHABET)] for char in str(value))


def resolve_int_or_percent(value: int | str | None, total: int, *, round_up: bool) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if value.endswith("%"):
        scaled = int(value[:-1]) * total / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value)


def condition(conditions: list[dict], condition_type: str) -> dict | None:
    return next((item for item in conditions if item.get("type") == condition_type), None)


def set_condition(conditions: list[dict], new: dict, *, keep_transition_if_same_status: bool = True) -> list[dict]:
    """Replace the condition of new's type; lastTransitionTime moves only when status changes."""
    current = condition(conditions, new["type"])
    if current is not None and current.get("status") == new.get("status") and keep_transition_if_same_status:
        new = {**new, "lastTransitionTime": current.get("lastTransitionTime", new.get("lastTransitionTime"))}
    return [item for item in conditions if item.get("type") != new["type"]] + [new]


def is_pod_active(pod: dict) -> bool:
    return "deletionTimestamp" not in pod["metadata"] and pod.get("status", {}).get("phase") not in (
        "Succeeded",
        "Failed",
    )


def is_pod_ready(pod: dict) -> bool:
    ready = condition(pod.get("status", {}).get("conditions") or [], "Ready")
    return bool(ready and ready.get("status") == "True")


def is_pod_available(pod: dict, min_ready_seconds: int, now: float) -> bool:
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    ready = condition(pod["status"]["conditions"], "Ready")
    return parse_rfc3339(ready["lastTransitionTime"]) + min_ready_seconds <= now


def controlled_by(obj: dict, owner: dict) -> bool:
    return any(
        ref.get("uid") == owner["metadata"]["uid"] and ref.get("controller")
        for ref in obj["metadata"].get("ownerReferences") or []
    )


def owner_reference(owner: dict) -> dict:
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: dict) -> dict | None:
    """metav1.GetControllerOf: the first ownerReference with ``controller: true``."""
    return next((ref for ref in obj["metadata"].get("ownerReferences") or [] if ref.get("controller")), None)


def _template_without_hash(template: dict) -> dict:
    stripped = copy.deepcopy(template)
    labels = stripped.get("metadata", {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    return stripped


def _revision(replica_set: dict) -> int:
    return int((replica_set["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "0"))


class Controllers:
    """One pass of every controller; the Cluster runs ``run_once`` every ``controller_period``."""

    def __init__(
        self,
        store: Store,
        events: EventRecorder,
        faults: Callable[[], KubeFaults],
        *,
        progress_deadline_scale: float = 1.0,
        delete: Callable[[str, str | None, str], bool],
    ) -> None:
        self.store = store
        self.events = events
        self.faults = faults
        self.progress_deadline_scale = progress_deadline_scale
        self.delete = delete
        self._scheduling_reported: dict[str, float] = {}

    def run_once(self) -> None:
        with self.store.lock:
            self.sync_namespaces()
            for hpa in self.store.list_refs("HorizontalPodAutoscaler"):
                self.sync_hpa(hpa["metadata"]["namespace"], hpa["metadata"]["name"])
            for deployment in self.store.list_refs("Deployment"):
                self.sync_deployment(deployment["metadata"]["namespace"], deployment["metadata"]["name"])
            for replica_set in self.store.list_refs("ReplicaSet"):
                self.sync_replica_set(replica_set["metadata"]["namespace"], replica_set["metadata"]["name"])
            for deployment in self.store.list_refs("Deployment"):
                self.sync_deployment_status(deployment["metadata"]["namespace"], deployment["metadata"]["name"])
            self.schedule_pods()
            for pdb in self.store.list_refs("PodDisruptionBudget"):
                self.sync_pdb(pdb["metadata"]["namespace"], pdb["metadata"]["name"])

    # ---- namespaces ----

    def sync_namespaces(self) -> None:
        for namespace in list(self.store.list_refs("Namespace")):
            name = namespace["metadata"]["name"]
            if "deletionTimestamp" not in namespace["metadata"]:
                self.store.write_status("Namespace", None, name, {"phase": "Active"})
                continue
            self.store.write_status("Namespace", None, name, {"phase": "Terminating"})
            contents = self.store.namespaces_of(name)
            for obj in contents:
                if obj["kind"] != "Event":
                    self.delete(obj["kind"], name, obj["metadata"]["name"])
            if not [obj for obj in self.store.namespaces_of(name) if obj["kind"] != "Event"]:
                for event in self.store.list_refs("Event", name):
                    self.store.remove("Event", name, event["metadata"]["name"])
                self.store.remove("Namespace", None, name)

    # ---- Deployment ----

    def _claim(self, controller: dict, kind: str, candidates: list[dict]) -> list[dict]:
        """pkg/controller/controller_ref_manager.go ``BaseControllerRefManager.ClaimObject``, as
        ``ClaimReplicaSets`` and ``ClaimPods`` call it with the controller's ``spec.selector``:
        - an object whose ControllerRef names another controller is ignored, whatever its labels
          (so a Deployment whose selector also matches another Deployment's ReplicaSets and pods
          never counts, scales or deletes them);
        - an object this controller owns is kept while the selector matches it, and released (its
          ownerReference with this controller's uid removed) when it no longer does, unless the
          controller is being deleted;
        - an orphan (no ControllerRef) is adopted (``AdoptReplicaSet``/``AdoptPod`` add an
          ownerReference with ``controller`` and ``blockOwnerDeletion`` true) when the selector
          matches, the controller is not being deleted and the object is not being deleted.
        Returns the objects the controller owns afterwards."""
        selector = controller["spec"].get("selector")
        uid = controller["metadata"]["uid"]
        deleting = "deletionTimestamp" in controller["metadata"]
        claimed = []
        for obj in candidates:
            namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
            matches = selector_matches(selector, obj["metadata"].get("labels") or {})
            ref = controller_of(obj)
            if ref is not None:
                if ref.get("uid") != uid:
                    continue  # owned by someone else: ignore
                if matches:
                    claimed.append(obj)
                elif not deleting:

                    def release(item: dict) -> None:
                        refs = [r for r in item["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
                        if refs:
                            item["metadata"]["ownerReferences"] = refs
                        else:
                            item["metadata"].pop("ownerReferences", None)

                    self.store.update(kind, namespace, name, release)
                continue
            if deleting or not matches or "deletionTimestamp" in obj["metadata"]:
                continue

            def adopt(item: dict) -> None:
                item["metadata"].setdefault("ownerReferences", []).append(owner_reference(controller))

            adopted = self.store.update(kind, namespace, name, adopt)
            if adopted is not None:
                claimed.append(self.store.get_ref(kind, namespace, name))
        return claimed

    def _replica_sets_of(self, deployment: dict) -> list[dict]:
        """deployment_controller.go ``getReplicaSetsForDeployment``: every ReplicaSet of the namespace
        (listed with ``labels.Everything()``, to release owned ones that stopped matching) through
        ``ClaimReplicaSets`` with the Deployment's selector. Status counts (sync.go ``calculateStatus``)
        and rollouts use only these."""
        namespace = deployment["metadata"]["namespace"]
        return self._claim(deployment, "ReplicaSet", list(self.store.list_refs("ReplicaSet", namespace)))

    def _new_replica_set(self, deployment: dict, replica_sets: list[dict]) -> dict | None:
        wanted = _template_without_hash(deployment["spec"]["template"])
        matching = [rs for rs in replica_sets if _template_without_hash(rs["spec"]["template"]) == wanted]
        return min(matching, key=lambda rs: rs["metadata"]["creationTimestamp"]) if matching else None

    def _set_progressing(self, deployment: dict, status: str, reason: str, message: str) -> None:
        now = now_rfc3339()
        conditions = deployment.setdefault("status", {}).setdefault("conditions", [])
        current = condition(conditions, "Progressing")
        if current is not None and current["status"] == status and current["reason"] == reason:
            return
        new = {
            "type": "Progressing",
            "status": status,
            "reason": reason,
            "message": message,
            "lastUpdateTime": now,
            "lastTransitionTime": now,
        }
        deployment["status"]["conditions"] = set_condition(conditions, new)

    def _scale(self, replica_set: dict, replicas: int, deployment: dict) -> None:
        old = replica_set["spec"].get("replicas", 1)
        if old == replicas:
            return
        namespace, name = replica_set["metadata"]["namespace"], replica_set["metadata"]["name"]
        desired = deployment["spec"]["replicas"]
        surge = 0
        if deployment["spec"]["strategy"]["type"] == "RollingUpdate":
            surge = resolve_int_or_percent(
                deployment["spec"]["strategy"]["rollingUpdate"].get("maxSurge"), desired, round_up=True
            )

        def mutate(rs: dict) -> None:
            rs["spec"]["replicas"] = replicas
            annotations = rs["metadata"].setdefault("annotations", {})
            annotations["deployment.kubernetes.io/desired-replicas"] = str(desired)
            annotations["deployment.kubernetes.io/max-replicas"] = str(desired + surge)

        self.store.update("ReplicaSet", namespace, name, mutate)
        direction = "up" if replicas > old else "down"
        self.events.record(
            deployment,
            "Normal",
            "ScalingReplicaSet",
            f"Scaled {direction} replica set {name} from {old} to {replicas}",
            component="deployment-controller",
        )

    def sync_deployment(self, namespace: str, name: str) -> None:
        deployment = self.store.get("Deployment", namespace, name)
        if deployment is None or "deletionTimestamp" in deployment["metadata"] or deployment["spec"].get("paused"):
            return
        spec = deployment["spec"]
        replica_sets = self._replica_sets_of(deployment)
        new_rs = self._new_replica_set(deployment, replica_sets)
        old_sets = [rs for rs in replica_sets if new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"]]
        max_revision = max((_revision(rs) for rs in replica_sets), default=0)
        recreate = spec["strategy"]["type"] == "Recreate"

        if new_rs is None:
            if recreate:
                for rs in old_sets:
                    self._scale(rs, 0, deployment)
                if any(
                    is_pod_active(pod) or "deletionTimestamp" in pod["metadata"]
                    for rs in old_sets
                    for pod in self._pods_of(rs)
                ):
                    return  # Recreate: the new ReplicaSet waits until every old pod is gone
            if recreate:
                initial = spec["replicas"]
            else:  # NewRSNewReplicas: as many as maxSurge allows next to the old pods
                surge = resolve_int_or_percent(
                    spec["strategy"]["rollingUpdate"].get("maxSurge"), spec["replicas"], round_up=True
                )
                old_total = sum(rs["spec"].get("replicas", 1) for rs in old_sets)
                initial = max(0, min(spec["replicas"], spec["replicas"] + surge - old_total))
            new_rs = self._create_replica_set(deployment, max_revision + 1, initial)
            deployment = self.store.get("Deployment", namespace, name)
            self._set_progressing(
                deployment, "True", "NewReplicaSetCreated", f'Created new replica set "{new_rs["metadata"]["name"]}"'
            )
            self.store.write_status("Deployment", namespace, name, deployment["status"])
            if recreate:
                return
        elif _revision(new_rs) < max_revision:
            # A rollback to an older template re-adopts its ReplicaSet with the next revision number.
            def bump_revision(rs: dict) -> None:
                rs["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = str(max_revision + 1)

            self.store.update("ReplicaSet", namespace, new_rs["metadata"]["name"], bump_revision)
            new_rs = self.store.get("ReplicaSet", namespace, new_rs["metadata"]["name"])

        revision = (new_rs["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION)
        if (deployment["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION) != revision:

            def annotate(obj: dict) -> None:
                obj["metadata"].setdefault("annotations", {})[REVISION_ANNOTATION] = revision

            self.store.update("Deployment", namespace, name, annotate)
            deployment = self.store.get("Deployment", namespace, name)

        desired = spec["replicas"]
        if recreate:
            for rs in old_sets:
                self._scale(rs, 0, deployment)
            if any(not self._pods_gone(rs) for rs in old_sets):
                return
            self._scale(new_rs, desired, deployment)
        else:
            self._rolling_update(deployment, new_rs, old_sets)
        self._cleanup_history(deployment)

    def _pods_of(self, replica_set: dict) -> list[dict]:
        return [
            pod
            for pod in self.store.list_refs("Pod", replica_set["metadata"]["namespace"])
            if controlled_by(pod, replica_set)
        ]

    def _pods_gone(self, replica_set: dict) -> bool:
        return not self._pods_of(replica_set)

    def _create_replica_set(self, deployment: dict, revision: int, replicas: int) -> dict:
        template = copy.deepcopy(deployment["spec"]["template"])
        template_hash = pod_template_hash(template, deployment.get("status", {}).get("collisionCount", 0))
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = template_hash
        selector = copy.deepcopy(deployment["spec"]["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = template_hash
        desired = deployment["spec"]["replicas"]
        surge = 0
        if deployment["spec"]["strategy"]["type"] == "RollingUpdate":
            surge = resolve_int_or_percent(
                deployment["spec"]["strategy"]["rollingUpdate"].get("maxSurge"), desired, round_up=True
            )
        name = f"{deployment['metadata']['name']}-{template_hash}"
        replica_set = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": deployment["metadata"]["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION_ANNOTATION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(desired),
                    "deployment.kubernetes.io/max-replicas": str(desired + surge),
                },
                "ownerReferences": [owner_reference(deployment)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": deployment["spec"].get("minReadySeconds", 0),
                "selector": selector,
                "template": template,
            },
        }
        if not replica_set["spec"]["minReadySeconds"]:
            del replica_set["spec"]["minReadySeconds"]
        stored = self.store.put(replica_set)
        self.store.write_status("ReplicaSet", stored["metadata"]["namespace"], name, {"replicas": 0})
        if replicas:
            self.events.record(
                deployment,
                "Normal",
                "ScalingReplicaSet",
                f"Scaled up replica set {name} from 0 to {replicas}",
                component="deployment-controller",
            )
        return self.store.get("ReplicaSet", stored["metadata"]["namespace"], name)

    def _rolling_update(self, deployment: dict, new_rs: dict, old_sets: list[dict]) -> None:
        spec = deployment["spec"]
        desired = spec["replicas"]
        rolling = spec["strategy"]["rollingUpdate"]
        max_surge = resolve_int_or_percent(rolling.get("maxSurge"), desired, round_up=True)
        max_unavailable = resolve_int_or_percent(rolling.get("maxUnavailable"), desired, round_up=False)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1  # the controller's own guard against a rollout that cannot move

        def spec_replicas(rs: dict) -> int:
            return rs["spec"].get("replicas", 1)

        # reconcileNewReplicaSet
        new_replicas = spec_replicas(new_rs)
        if new_replicas > desired:
            self._scale(new_rs, desired, deployment)
        elif new_replicas < desired:
            current_total = sum(spec_replicas(rs) for rs in old_sets) + new_replicas
            max_total = desired + max_surge
            if current_total < max_total:
                scale_up = min(max_total - current_total, desired - new_replicas)
                self._scale(new_rs, new_replicas + scale_up, deployment)
        new_rs = self.store.get("ReplicaSet", new_rs["metadata"]["namespace"], new_rs["metadata"]["name"])

        # reconcileOldReplicaSets
        old_sets = [
            self.store.get("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"]) for rs in old_sets
        ]
        old_sets = [rs for rs in old_sets if rs is not None]
        if sum(spec_replicas(rs) for rs in old_sets) == 0:
            return
        all_pods = sum(spec_replicas(rs) for rs in old_sets) + spec_replicas(new_rs)
        min_available = desired - max_unavailable
        new_unavailable = spec_replicas(new_rs) - new_rs.get("status", {}).get("availableReplicas", 0)
        max_scaled_down = all_pods - min_available - new_unavailable
        if max_scaled_down <= 0:
            return
        old_sets.sort(key=lambda rs: rs["metadata"]["creationTimestamp"])
        # cleanupUnhealthyReplicas: old pods that are not available go first.
        cleaned = 0
        for rs in old_sets:
            if cleaned >= max_scaled_down:
                break
            unhealthy = spec_replicas(rs) - rs.get("status", {}).get("availableReplicas", 0)
            if unhealthy <= 0:
                continue
            scale_down = min(unhealthy, max_scaled_down - cleaned)
            self._scale(rs, spec_replicas(rs) - scale_down, deployment)
            rs["spec"]["replicas"] = spec_replicas(rs) - scale_down
            cleaned += scale_down
        max_scaled_down -= cleaned
        # scaleDownOldReplicaSetsForRollingUpdate
        available = sum(rs.get("status", {}).get("availableReplicas", 0) for rs in old_sets) + new_rs.get(
            "status", {}
        ).get("availableReplicas", 0)
        if available <= min_available or max_scaled_down <= 0:
            return
        remaining = min(available - min_available, max_scaled_down)
        for rs in old_sets:
            if remaining <= 0:
                break
            scale_down = min(spec_replicas(rs), remaining)
            if scale_down:
                self._scale(rs, spec_replicas(rs) - scale_down, deployment)
                remaining -= scale_down

    def _cleanup_history(self, deployment: dict) -> None:
        limit = deployment["spec"].get("revisionHistoryLimit", 10)
        replica_sets = self._replica_sets_of(deployment)
        new_rs = self._new_replica_set(deployment, replica_sets)
        idle_old = [
            rs
            for rs in replica_sets
            if (new_rs is None or rs["metadata"]["uid"] != new_rs["metadata"]["uid"])
            and rs["spec"].get("replicas", 1) == 0
            and rs.get("status", {}).get("replicas", 0) == 0
            and not self._pods_of(rs)
        ]
        idle_old.sort(key=_revision)
        for rs in idle_old[: max(0, len(idle_old) - limit)]:
            self.delete("ReplicaSet", rs["metadata"]["namespace"], rs["metadata"]["name"])

    def sync_deployment_status(self, namespace: str, name: str) -> None:
        deployment = self.store.get("Deployment", namespace, name)
        if deployment is None or "deletionTimestamp" in deployment["metadata"]:
            return
        spec = deployment["spec"]
        replica_sets = self._replica_sets_of(deployment)
        new_rs = self._new_replica_set(deployment, replica_sets)
        desired = spec["replicas"]

        def rs_status(rs: dict, field: str) -> int:
            return rs.get("status", {}).get(field, 0)

        available = sum(rs_status(rs, "availableReplicas") for rs in replica_sets)
        total_spec = sum(rs["spec"].get("replicas", 1) for rs in replica_sets)
        counts = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": sum(rs_status(rs, "replicas") for rs in replica_sets),
            "updatedReplicas": rs_status(new_rs, "replicas") if new_rs else 0,
            "readyReplicas": sum(rs_status(rs, "readyReplicas") for rs in replica_sets),
            "availableReplicas": available,
            "unavailableReplicas": max(total_spec - available, 0),
        }
        old_status = deployment.get("status", {})
        status: dict = {key: value for key, value in counts.items() if value}
        if "collisionCount" in old_status:
            status["collisionCount"] = old_status["collisionCount"]
        conditions = copy.deepcopy(old_status.get("conditions") or [])
        now = now_rfc3339()
        max_unavailable = 0
        if spec["strategy"]["type"] == "RollingUpdate":
            max_unavailable = resolve_int_or_percent(
                spec["strategy"]["rollingUpdate"].get("maxUnavailable"), desired, round_up=False
            )
        if available >= desired - max_unavailable:
            new = {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
            }
        else:
            new = {
                "type": "Available",
                "status": "False",
                "reason": "MinimumReplicasUnavailable",
                "message": "Deployment does not have minimum availability.",
            }
        current = condition(conditions, "Available")
        if current is None or (current["status"], current["reason"]) != (new["status"], new["reason"]):
            conditions = set_condition(conditions, {**new, "lastUpdateTime": now, "lastTransitionTime": now})

        progressing = condition(conditions, "Progressing")
        rs_name = new_rs["metadata"]["name"] if new_rs else None
        complete_already = (
            counts["replicas"] == counts["updatedReplicas"]
            and progressing is not None
            and progressing["reason"] == "NewReplicaSetAvailable"
        )
        if new_rs is not None and progressing is None:
            progressing_new = {
                "type": "Progressing",
                "status": "True",
                "reason": "FoundNewReplicaSet",
                "message": f'Found new replica set "{rs_name}"',
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            }
            conditions = set_condition(conditions, progressing_new)
            progressing = progressing_new
        if not complete_already and progressing is not None:
            complete = (
                counts["updatedReplicas"] == desired
                and counts["replicas"] == desired
                and available == desired
                and counts["observedGeneration"] >= deployment["metadata"].get("generation", 1)
            )
            old_counts = {key: old_status.get(key, 0) for key in counts}
            old_replicas = old_counts["replicas"] - old_counts["updatedReplicas"]
            new_old_replicas = counts["replicas"] - counts["updatedReplicas"]
            made_progress = (
                counts["updatedReplicas"] > old_counts["updatedReplicas"]
                or new_old_replicas < old_replicas
                or counts["readyReplicas"] > old_counts["readyReplicas"]
                or available > old_counts["availableReplicas"]
            )
            deadline = spec.get("progressDeadlineSeconds", 600) * self.progress_deadline_scale
            if complete:
                new = {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "NewReplicaSetAvailable",
                    "message": f'ReplicaSet "{rs_name}" has successfully progressed.',
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                }
                if (progressing["status"], progressing["reason"]) != ("True", "NewReplicaSetAvailable"):
                    conditions = set_condition(conditions, new)
            elif made_progress:
                message = (
                    f'ReplicaSet "{rs_name}" is progressing.' if rs_name else f'Deployment "{name}" is progressing.'
                )
                new = {
                    "type": "Progressing",
                    "status": "True",
                    "reason": "ReplicaSetUpdated",
                    "message": message,
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                }
                conditions = set_condition(conditions, new)
            elif (
                progressing["reason"] != "ProgressDeadlineExceeded"
                and parse_rfc3339(progressing["lastUpdateTime"]) + deadline < time.time()
            ):
                new = {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{rs_name}" has timed out progressing.',
                    "lastUpdateTime": now,
                    "lastTransitionTime": now,
                }
                conditions = set_condition(conditions, new, keep_transition_if_same_status=False)
        # The API orders conditions Available, Progressing as the controller appends them.
        order = {"Available": 0, "Progressing": 1, "ReplicaFailure": 2}
        status["conditions"] = sorted(conditions, key=lambda item: order.get(item["type"], 9))
        self.store.write_status("Deployment", namespace, name, status)

    # ---- ReplicaSet ----

    def _claim_pods(self, replica_set: dict) -> list[dict]:
        """replica_set.go ``syncReplicaSet``: all pods of the namespace (``labels.Everything()``),
        ``controller.FilterActivePods``, then ``claimPods`` (``ClaimPods`` with the ReplicaSet's selector,
        which carries its ``pod-template-hash``, so a ReplicaSet never takes another template's pods)."""
        namespace = replica_set["metadata"]["namespace"]
        active = [pod for pod in self.store.list_refs("Pod", namespace) if is_pod_active(pod)]
        return self._claim(replica_set, "Pod", active)

    def sync_replica_set(self, namespace: str, name: str) -> None:
        replica_set = self.store.get("ReplicaSet", namespace, name)
        if replica_set is None or "deletionTimestamp" in replica_set["metadata"]:
            return
        pods = self._claim_pods(replica_set)
        wanted = replica_set["spec"].get("replicas", 1)
        if len(pods) < wanted:
            for _ in range(wanted - len(pods)):
                self._create_pod(replica_set)
        elif len(pods) > wanted:
            # getPodsToDelete: unscheduled, then pending, then not ready, then the newest first.
            def deletion_rank(pod: dict) -> tuple:
                status = pod.get("status", {})
                return (
                    bool(pod["spec"].get("nodeName")),
                    status.get("phase") == "Running",
                    is_pod_ready(pod),
                    -parse_rfc3339(pod["metadata"]["creationTimestamp"]),
                )

            for pod in sorted(pods, key=deletion_rank)[: len(pods) - wanted]:
                self.delete("Pod", namespace, pod["metadata"]["name"])
                self.events.record(
                    replica_set,
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {pod['metadata']['name']}",
                    component="replicaset-controller",
                )
        pods = [pod for pod in self._pods_of(replica_set) if is_pod_active(pod)]
        min_ready = replica_set["spec"].get("minReadySeconds", 0)
        now = time.time()
        status = {
            "replicas": len(pods),
            "fullyLabeledReplicas": sum(
                1
                for pod in pods
                if all(
                    (pod["metadata"].get("labels") or {}).get(key) == value
                    for key, value in (replica_set["spec"]["template"]["metadata"].get("labels") or {}).items()
                )
            ),
            "readyReplicas": sum(1 for pod in pods if is_pod_ready(pod)),
            "availableReplicas": sum(1 for pod in pods if is_pod_available(pod, min_ready, now)),
            "observedGeneration": replica_set["metadata"].get("generation", 1),
        }
        status = {key: value for key, value in status.items() if value or key == "replicas"}
        self.store.write_status("ReplicaSet", namespace, name, status)

    def _create_pod(self, replica_set: dict) -> None:
        template = copy.deepcopy(replica_set["spec"]["template"])
        metadata = template.get("metadata", {})
        name = f"{replica_set['metadata']['name']}-{random_suffix()}"
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": replica_set["metadata"]["namespace"],
                "generateName": f"{replica_set['metadata']['name']}-",
                "labels": metadata.get("labels", {}),
                "ownerReferences": [owner_reference(replica_set)],
            },
            "spec": template.get("spec", {}),
        }
        if metadata.get("annotations"):
            pod["metadata"]["annotations"] = metadata["annotations"]
        self.store.put(pod)
        self.store.write_status(
            "Pod", pod["metadata"]["namespace"], name, {"phase": "Pending", "qosClass": qos_class(pod["spec"])}
        )
        self.events.record(
            replica_set, "Normal", "SuccessfulCreate", f"Created pod: {name}", component="replicaset-controller"
        )

    # ---- scheduler ----

    def schedule_pods(self) -> None:
        unschedulable = self.faults().unschedulable
        for pod in list(self.store.list_refs("Pod")):
            if pod["spec"].get("nodeName") or "deletionTimestamp" in pod["metadata"]:
                continue
            namespace, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
            now = now_rfc3339()
            reason_message = UNSCHEDULABLE_MESSAGE if unschedulable else self._node_misfit(pod)
            if reason_message is not None:
                status = copy.deepcopy(pod.get("status", {}))
                status["phase"] = "Pending"
                status["conditions"] = set_condition(
                    status.get("conditions") or [],
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": reason_message,
                        "lastTransitionTime": now,
                    },
                )
                self.store.write_status("Pod", namespace, name, status)
                # The scheduler retries with back-off (1 s doubling to 10 s); each retry reports again.
                last = self._scheduling_reported.get(pod["metadata"]["uid"], 0.0)
                if time.time() - last >= 1.0:
                    self._scheduling_reported[pod["metadata"]["uid"]] = time.time()
                    self.events.record(
                        pod, "Warning", "FailedScheduling", reason_message, component="default-scheduler"
                    )
                continue

            def bind(obj: dict) -> None:
                obj["spec"]["nodeName"] = NODE_NAME

            self.store.update("Pod", namespace, name, bind)
            status = copy.deepcopy(self.store.get_ref("Pod", namespace, name).get("status", {}))
            status["conditions"] = set_condition(
                status.get("conditions") or [],
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                keep_transition_if_same_status=False,
            )
            self.store.write_status("Pod", namespace, name, status)
            self.events.record(
                pod,
                "Normal",
                "Scheduled",
                f"Successfully assigned {namespace}/{name} to {NODE_NAME}",
                component="default-scheduler",
            )

    def _node_misfit(self, pod: dict) -> str | None:
        """The scheduler's filter plugins against the one node: NodeAffinity (``nodeSelector``),
        TaintToleration (the node has no taints: every pod tolerates it) and NodeResourcesFit (the
        pod's requests, init containers' maximum included, against the node's allocatable; other
        pods' requests are not summed). None when the pod fits, else the FailedScheduling message."""
        node = self.store.get_ref("Node", None, NODE_NAME)
        if node is None:
            return "0/0 nodes are available."
        node_labels = node["metadata"].get("labels") or {}
        selector = pod["spec"].get("nodeSelector") or {}
        if any(node_labels.get(key) != value for key, value in selector.items()):
            return "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector."
        allocatable = (node.get("status") or {}).get("allocatable") or {}
        wanted: dict[str, float] = {}
        for container in pod["spec"].get("containers") or []:
            for resource, quantity in ((container.get("resources") or {}).get("requests") or {}).items():
                wanted[resource] = wanted.get(resource, 0.0) + parse_quantity(quantity)
        for container in pod["spec"].get("initContainers") or []:
            for resource, quantity in ((container.get("resources") or {}).get("requests") or {}).items():
                wanted[resource] = max(wanted.get(resource, 0.0), parse_quantity(quantity))
        short = sorted(
            resource
            for resource, amount in wanted.items()
            if amount > 0 and amount > parse_quantity(allocatable.get(resource, "0"))
        )
        if short:
            return "0/1 nodes are available: " + ", ".join(f"1 Insufficient {resource}" for resource in short) + "."
        return None

    # ---- HorizontalPodAutoscaler (autoscaling/v2) ----

    def sync_hpa(self, namespace: str, name: str) -> None:
        hpa = self.store.get("HorizontalPodAutoscaler", namespace, name)
        if hpa is None:
            return
        spec = hpa["spec"]
        target_ref = spec["scaleTargetRef"]
        target = self.store.get(target_ref["kind"], namespace, target_ref["name"])
        now = now_rfc3339()
        old_status = hpa.get("status", {})
        conditions = copy.deepcopy(old_status.get("conditions") or [])

        def put_condition(condition_type: str, status: str, reason: str, message: str) -> None:
            nonlocal conditions
            current = condition(conditions, condition_type)
            if current and (current["status"], current["reason"], current["message"]) == (status, reason, message):
                return
            conditions = set_condition(
                conditions,
                {
                    "type": condition_type,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now,
                },
            )

        if target is None:
            put_condition(
                "AbleToScale",
                "False",
                "FailedGetScale",
                f"the HPA controller was unable to get the target's current scale: "
                f'{target_ref["kind"].lower()}s.apps "{target_ref["name"]}" not found',
            )
            self.store.write_status(
                "HorizontalPodAutoscaler",
                namespace,
                name,
                {"currentReplicas": 0, "desiredReplicas": 0, "conditions": conditions},
            )
            return
        current = target["spec"].get("replicas", 1)
        minimum, maximum = spec.get("minReplicas", 1), spec["maxReplicas"]
        # Metrics: the simulated metrics-server reports every pod idle (0 % of its request). A resource
        # metric on a container without a request for it cannot be computed, as on a real cluster.
        missing_request = None
        metrics = list(spec.get("metrics") or [])
        if "targetCPUUtilizationPercentage" in spec:
            metrics.append({"type": "Resource", "resource": {"name": "cpu"}})
        for metric in metrics:
            if metric.get("type") == "Resource":
                resource = metric["resource"]["name"]
                for container in target["spec"]["template"]["spec"].get("containers", []):
                    if resource not in ((container.get("resources") or {}).get("requests") or {}):
                        missing_request = (resource, container["name"])
        if missing_request is not None:
            resource, container_name = missing_request
            put_condition(
                "AbleToScale",
                "True",
                "SucceededGetScale",
                "the HPA controller was able to get the target's current scale",
            )
            put_condition(
                "ScalingActive",
                "False",
                "FailedGetResourceMetric",
                f"the HPA was unable to compute the replica count: failed to get {resource} utilization: "
                f"missing request for {resource} in container {container_name}",
            )
            desired = current
        else:
            desired = min(max(current, minimum), maximum)
            put_condition("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
            put_condition(
                "ScalingActive",
                "True",
                "ValidMetricFound",
                "the HPA was able to successfully calculate a replica count from cpu resource utilization "
                "(percentage of request)",
            )
            if current < minimum:
                put_condition(
                    "ScalingLimited",
                    "True",
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            elif current > maximum:
                put_condition(
                    "ScalingLimited",
                    "True",
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            else:
                put_condition(
                    "ScalingLimited", "False", "DesiredWithinRange", "the desired count is within the acceptable range"
                )
        if desired != current:

            def scale(obj: dict) -> None:
                obj["spec"]["replicas"] = desired

            self.store.update(target_ref["kind"], namespace, target_ref["name"], scale)
            reason = (
                "Current number of replicas below Spec.MinReplicas"
                if desired > current
                else "Current number of replicas above Spec.MaxReplicas"
            )
            self.events.record(
                hpa,
                "Normal",
                "SuccessfulRescale",
                f"New size: {desired}; reason: {reason}",
                component="horizontal-pod-autoscaler",
            )
        status = {"currentReplicas": current, "desiredReplicas": desired, "conditions": conditions}
        if desired != current:
            status["lastScaleTime"] = now
        elif old_status.get("lastScaleTime"):
            status["lastScaleTime"] = old_status["lastScaleTime"]
        if hpa["metadata"].get("generation"):
            status["observedGeneration"] = hpa["metadata"]["generation"]
        if missing_request is None and metrics:
            status["currentMetrics"] = [
                {
                    "type": "Resource",
                    "resource": {
                        "name": metric["resource"]["name"],
                        "current": {"averageUtilization": 0, "averageValue": "0"},
                    },
                }
                for metric in metrics
                if metric.get("type") == "Resource"
            ]
        if hpa["apiVersion"] == "autoscaling/v1":
            self._present_hpa_v1(hpa, status)
            return
        self.store.write_status("HorizontalPodAutoscaler", namespace, name, status)

    def _present_hpa_v1(self, hpa: dict, status: dict) -> None:
        """autoscaling/v1 has no status.conditions: the API server shows them in the
        ``autoscaling.alpha.kubernetes.io/conditions`` annotation (what gitops-engine reads for v1)."""
        namespace, name = hpa["metadata"]["namespace"], hpa["metadata"]["name"]
        annotation = json.dumps(status.get("conditions") or [], separators=(",", ":"))
        if (hpa["metadata"].get("annotations") or {}).get(HPA_V1_CONDITIONS_ANNOTATION) != annotation:

            def annotate(obj: dict) -> None:
                obj["metadata"].setdefault("annotations", {})[HPA_V1_CONDITIONS_ANNOTATION] = annotation

            self.store.update("HorizontalPodAutoscaler", namespace, name, annotate)
        v1_status = {
            key: status[key]
            for key in ("observedGeneration", "lastScaleTime", "currentReplicas", "desiredReplicas")
            if key in status
        }
        if "targetCPUUtilizationPercentage" in hpa["spec"] and status.get("currentMetrics"):
            v1_status["currentCPUUtilizationPercentage"] = 0
        self.store.write_status("HorizontalPodAutoscaler", namespace, name, v1_status)

    # ---- PodDisruptionBudget (policy/v1) ----

    def sync_pdb(self, namespace: str, name: str) -> None:
        pdb = self.store.get("PodDisruptionBudget", namespace, name)
        if pdb is None:
            return
        spec = pdb["spec"]
        pods = [
            pod
            for pod in self.store.list_refs("Pod", namespace)
            if is_pod_active(pod) and selector_matches(spec.get("selector"), pod["metadata"].get("labels") or {})
        ]
        expected = len(pods)
        healthy = sum(1 for pod in pods if is_pod_ready(pod))
        if "minAvailable" in spec:
            desired_healthy = resolve_int_or_percent(spec["minAvailable"], expected, round_up=True)
        elif "maxUnavailable" in spec:
            desired_healthy = max(expected - resolve_int_or_percent(spec["maxUnavailable"], expected, round_up=True), 0)
        else:
            desired_healthy = expected
        allowed = max(healthy - desired_healthy, 0) if expected else 0
        now = now_rfc3339()
        if allowed > 0:
            new = {"type": "DisruptionAllowed", "status": "True", "reason": "SufficientPods", "message": ""}
        else:
            new = {"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": ""}
        old_conditions = pdb.get("status", {}).get("conditions") or []
        current = condition(old_conditions, "DisruptionAllowed")
        if current and (current["status"], current["reason"]) == (new["status"], new["reason"]):
            conditions = old_conditions
        else:
            conditions = [
                {**new, "lastTransitionTime": now, "observedGeneration": pdb["metadata"].get("generation", 1)}
            ]
        status = {
            "observedGeneration": pdb["metadata"].get("generation", 1),
            "currentHealthy": healthy,
            "desiredHealthy": desired_healthy,
            "expectedPods": expected,
            "disruptionsAllowed": allowed,
            "conditions": conditions,
        }
        self.store.write_status("PodDisruptionBudget", namespace, name, status)


def qos_class(pod_spec: dict) -> str:
    """Guaranteed when every container's cpu and memory limits equal its requests; BestEffort when none
    has any; Burstable otherwise (concepts/workloads/pods/pod-qos)."""
    containers = pod_spec.get("containers") or []
    any_resources = False
    guaranteed = True
    for container in containers:
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        if limits or requests:
            any_resources = True
        for resource in ("cpu", "memory"):
            if resource not in limits or requests.get(resource, limits[resource]) != limits[resource]:
                guaranteed = False
    if not any_resources:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"
