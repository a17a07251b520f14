"""core/v1 Events as components record them: a repeated event (same object, type, reason, message and
source) is not stored twice but counted (``count``, ``lastTimestamp``), as client-go's EventCorrelator
aggregates them."""

from __future__ import annotations

import threading

from tests.simulator.kube.store import Store, now_rfc3339

NODE_NAME = "sim-node"


class EventRecorder:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._serial = 0

    def record(
        self, obj: dict, event_type: str, reason: str, message: str, *, component: str, field_path: str | None = None
    ) -> None:
        metadata = obj["metadata"]
        namespace = metadata.get("namespace") or "default"
        involved = {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj["kind"],
            "name": metadata["name"],
            "uid": metadata.get("uid", ""),
            "resourceVersion": metadata.get("resourceVersion", ""),
        }
        if metadata.get("namespace"):
            involved["namespace"] = metadata["namespace"]
        if field_path:
            involved["fieldPath"] = field_path
        source = {"component": component}
        if component == "kubelet":
            source["host"] = NODE_NAME
        with self._store.lock:
            for existing in self._store.list_refs("Event", namespace):
                same_object = existing["involvedObject"].get("uid") == involved["uid"] and existing[
                    "involvedObject"
                ].get("fieldPath") == involved.get("fieldPath")
                if (
                    same_object
                    and (existing["type"], existing["reason"], existing["message"]) == (event_type, reason, message)
                    and existing["source"] == source
                ):

                    def bump(event: dict) -> None:
                        event["count"] = event.get("count", 1) + 1
                        event["lastTimestamp"] = now_rfc3339()

                    self._store.update("Event", namespace, existing["metadata"]["name"], bump)
                    return
            with self._lock:
                self._serial += 1
                serial = self._serial
            timestamp = now_rfc3339()
            self._store.put(
                {
                    "apiVersion": "v1",
                    "kind": "Event",
                    "metadata": {"name": f"{metadata['name']}.{serial:016x}", "namespace": namespace},
                    "involvedObject": involved,
                    "reason": reason,
                    "message": message,
                    "type": event_type,
                    "count": 1,
                    "firstTimestamp": timestamp,
                    "lastTimestamp": timestamp,
                    "source": source,
                    "reportingComponent": component,
                    "reportingInstance": NODE_NAME if component == "kubelet" else "",
                }
            )
