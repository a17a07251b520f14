"""Application objects as the Kubernetes API stores them (the CRD in Argo CD's namespace): uid,
resourceVersion, generation, finalizers and deletionTimestamp. An object with finalizers is only
marked for deletion; it disappears when the last finalizer is removed."""

from __future__ import annotations

import copy
import itertools
import threading
import uuid
from collections.abc import Callable

from tests.simulator.argocd.errors import ArgoError
from tests.simulator.argocd.resources import now_rfc3339


class ApplicationStore:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.lock = threading.RLock()
        self._apps: dict[str, dict] = {}
        self._versions = itertools.count(1)

    def names(self) -> list[str]:
        with self.lock:
            return sorted(self._apps)

    def get(self, name: str) -> dict | None:
        with self.lock:
            app = self._apps.get(name)
            return copy.deepcopy(app) if app is not None else None

    def create(self, app: dict) -> dict:
        name = app["metadata"]["name"]
        with self.lock:
            if name in self._apps:
                raise ArgoError("AlreadyExists", f'applications.argoproj.io "{name}" already exists')
            stored = copy.deepcopy(app)
            metadata = stored["metadata"]
            metadata.update(
                namespace=self.namespace,
                uid=str(uuid.uuid4()),
                generation=1,
                creationTimestamp=now_rfc3339(),
                resourceVersion=str(next(self._versions)),
            )
            metadata.pop("deletionTimestamp", None)
            stored.setdefault("status", {})
            self._apps[name] = stored
            return copy.deepcopy(stored)

    def update(self, name: str, mutate: Callable[[dict], None]) -> dict | None:
        """Apply ``mutate`` to the stored object under the lock; None when it does not exist."""
        with self.lock:
            app = self._apps.get(name)
            if app is None:
                return None
            before = copy.deepcopy(app)
            mutate(app)
            if app["metadata"].get("deletionTimestamp") and set(app["metadata"].get("finalizers") or []) - set(
                before["metadata"].get("finalizers") or []
            ):
                self._apps[name] = before
                added = sorted(
                    set(app["metadata"].get("finalizers") or []) - set(before["metadata"].get("finalizers") or [])
                )
                raise ArgoError(
                    "InvalidArgument",
                    f'Application.argoproj.io "{name}" is invalid: metadata.finalizers: '
                    "Forbidden: no new finalizers can be added if the object is being deleted, "
                    f"found new finalizers {added}",
                )
            if app.get("spec") != before.get("spec"):
                app["metadata"]["generation"] = before["metadata"].get("generation", 1) + 1
            app["metadata"]["resourceVersion"] = str(next(self._versions))
            if app["metadata"].get("deletionTimestamp") and not app["metadata"].get("finalizers"):
                del self._apps[name]
            return copy.deepcopy(app)

    def delete(self, name: str) -> bool:
        """Kubernetes delete: mark when finalizers remain, remove otherwise. False when absent."""
        with self.lock:
            app = self._apps.get(name)
            if app is None:
                return False
            if app["metadata"].get("finalizers"):
                if not app["metadata"].get("deletionTimestamp"):
                    app["metadata"]["deletionTimestamp"] = now_rfc3339()
                    app["metadata"]["resourceVersion"] = str(next(self._versions))
            else:
                del self._apps[name]
            return True
