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


class DeploymentTarget(Protocol):
    kind: str

    def sync(self, app: AppRef, revision: str, log: Callable[[str], None]) -> dict:
        """Make the cluster (or this machine) run what ``revision`` describes for ``app``."""

    def wait(self, app: AppRef, revision: str, timeout: float, log: Callable[[str], None]) -> dict:
        """Until synced, healthy and reachable; returns external_ip and deployment_url."""

    def remove(self, app: AppRef, revision: str, log: Callable[[str], None]) -> None:
        """After the app's files were removed in ``revision``: prune its resources."""

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
