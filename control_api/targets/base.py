"""What every target offers the pipeline's sync and wait steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx


@dataclass(frozen=True)
class AppRef:
    namespace: str
    model_name: str
    path: str  # the model's overlay folder in the GitOps repo
    application: str  # Argo CD Application name


def app_ref(namespace: str, model_name: str) -> AppRef:
    """The app of ``model_name`` in ``namespace``: its overlay folder and its Application's name."""
    from renderer import application_name, model_dir

    return AppRef(namespace, model_name, model_dir(namespace, model_name), application_name(namespace, model_name))


@dataclass(frozen=True)
class SyncRecord:
    """One entry of what the target applied, oldest first (Argo CD's ``status.history``)."""

    id: int
    revision: str
    deployed_at: str | None
    initiated_by: str | None
    automated: bool


@dataclass(frozen=True)
class ServedState:
    """What the target actually runs for an app, as the target itself reports it."""

    revision: str | None  # the git revision applied last, when the target knows it
    image: str | None  # the image running, when the target knows it
    syncs: tuple[SyncRecord, ...] = ()
    healthy: bool | None = None


class DeploymentTarget(Protocol):
    kind: str

    def sync(self, app: AppRef, revision: str, log: Callable[[str], None]) -> dict[str, Any]:
        """Make the cluster (or this machine) run what ``revision`` describes for ``app``."""

    def look_ready(self, app: AppRef, revision: str, state: dict[str, Any]) -> Ready | NotReady:
        """One look: is ``revision`` running, healthy and reachable? Never sleeps; raises when the
        rollout has failed. ``state`` is what the previous look returned in ``NotReady.state``."""

    def remove(self, app: AppRef, revision: str, log: Callable[[str], None]) -> None:
        """After the app's files were removed in ``revision``: prune its resources."""

    def served(self, app: AppRef) -> ServedState | None:
        """What runs for ``app`` now, read from the target (None when nothing does)."""

    def ping(self) -> None: ...


@dataclass(frozen=True)
class Ready:
    outputs: dict[str, Any]  # external_ip, deployment_url
    message: str


@dataclass(frozen=True)
class NotReady:
    reason: str  # what is still missing, said so that it can end a timeout message
    state: dict[str, Any] = field(default_factory=dict)  # handed to the next look
    details: dict[str, Any] | None = None


def health_answer(base_url: str) -> str | None:
    """None when ``{base_url}/health`` answers 200, else what it did instead. A load balancer
    hostname that does not resolve yet is an answer like any other: the caller looks again."""
    try:
        response = httpx.get(f"{base_url}/health", timeout=5)
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if response.status_code == 200 else f"HTTP {response.status_code}"


def url_for(address: str, port: int = 80) -> str:
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"
