"""What every target offers the pipeline's sync and wait steps."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol

import httpx

from control_api.errors import DeploymentTimedOut


@dataclass(frozen=True)
class AppRef:
    namespace: str
    model_name: str
    path: str  # the model's overlay folder in the GitOps repo
    application: str  # Argo CD Application name


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

    def sync(self, app: AppRef, revision: str, log: Callable[[str], None]) -> dict:
        """Make the cluster (or this machine) run what ``revision`` describes for ``app``."""

    def wait(self, app: AppRef, revision: str, timeout: float, log: Callable[[str], None]) -> dict:
        """Until synced, healthy and reachable; returns external_ip and deployment_url."""

    def remove(self, app: AppRef, revision: str, log: Callable[[str], None]) -> None:
        """After the app's files were removed in ``revision``: prune its resources."""

    def served(self, app: AppRef) -> ServedState | None:
        """What runs for ``app`` now, read from the target (None when nothing does)."""

    def ping(self) -> None: ...


def probe_health(base_url: str, timeout: float, log: Callable[[str], None], *, host_header: str | None = None) -> None:
    """Poll ``{base_url}/health`` until it answers 200."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        try:
            response = httpx.get(f"{base_url}/health", timeout=5)
            if response.status_code == 200:
                log(f"{base_url}/health answered 200")
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            raise DeploymentTimedOut(f"{base_url}/health did not answer 200 within {timeout:.0f} s (last: {last})")
        time.sleep(0.5)


def url_for(address: str, port: int = 80) -> str:
    host = f"[{address}]" if ":" in address and not address.startswith("[") else address
    return f"http://{host}" if port == 80 else f"http://{host}:{port}"
