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
    endpoint: str  # names the Deployment and Service; the model's name unless the deploy chose one
    path: str  # the endpoint's overlay folder in the GitOps repo
    application: str  # Argo CD Application name

    @property
    def named_endpoint(self) -> bool:
        """Whether the endpoint has a name of its own rather than the model's."""
        return self.endpoint != self.model_name

    @property
    def at_endpoint(self) -> str:
        """What a commit subject or a message adds to the model's name to say where: nothing for
        the model's default endpoint."""
        return f" at {self.endpoint}" if self.named_endpoint else ""

    def trailers(self) -> dict[str, str]:
        """The trailers that name the app in a commit: the model, and the endpoint when it has its own
        name (a commit of the default endpoint reads as it did before endpoints existed)."""
        named = {"Model-Name": self.model_name}
        if self.named_endpoint:
            named["Endpoint"] = self.endpoint
        return named


def app_ref(namespace: str, model_name: str, endpoint: str | None = None) -> AppRef:
    """The app of ``model_name``'s endpoint in ``namespace`` (its default endpoint, named after the
    model, when ``endpoint`` is None): its overlay folder and its Application's name."""
    from renderer import application_name, model_dir

    name = endpoint or model_name
    return AppRef(namespace, model_name, name, model_dir(namespace, name), application_name(namespace, name))


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
    url: str | None = None  # where the app answers, when the target has an address for it


class DeploymentTarget(Protocol):
    kind: str

    def sync(self, app: AppRef, revision: str, log: Callable[[str], None]) -> dict[str, Any]:
        """Make the cluster (or this machine) run what ``revision`` describes for ``app``."""

    def look_ready(self, app: AppRef, revision: str, state: dict[str, Any]) -> Ready | NotReady:
        """One look: is ``revision`` running, healthy and reachable? Never sleeps; raises when the
        rollout has failed. ``state`` is what the previous look returned in ``NotReady.state``."""

    def remove(self, app: AppRef, revision: str, log: Callable[[str], None]) -> None:
        """After the app's files were removed in ``revision``: prune its resources."""

    def served(self, app: AppRef, *, with_url: bool = True) -> ServedState | None:
        """What runs for ``app`` now, read from the target (None when nothing does). ``with_url=False``
        skips finding its URL when the caller needs only the history (on Argo CD, one Kubernetes call)."""

    def replica_metrics(self, app: AppRef, deployment_name: str) -> list[str]:
        """The Prometheus metrics of each ready replica of the app's Deployment ``deployment_name``,
        read from that replica itself (a canary's analysis needs the canary's own numbers)."""

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
