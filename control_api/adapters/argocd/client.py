"""Argo CD REST client (the subset of ``/api/v1`` the deploy pipeline needs).

Authentication is either a static API token or a username/password session: the session token is
fetched lazily from ``POST /api/v1/session`` and fetched again once when the server answers 401
(session tokens expire). Every failure leaves this module as a ``control_api.errors`` type:
401/403 -> ``ArgoCDAuthFailed``, 5xx or an unreachable server -> ``ServiceUnavailable`` after a
few bounded retries, other refusals -> ``ArgoCDRequestRejected`` or ``NotFoundError``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx

from control_api.adapters.argocd.errors import (
    ArgoCDAuthFailed,
    ArgoCDOperationInProgress,
    ArgoCDRequestRejected,
)
from control_api.errors import NotFoundError, ServiceUnavailable, TerminalError
from control_api.settings import ArgoCDSettings

# Gateways and an API server that is restarting answer with these; the request never ran.
RETRYABLE_STATUS = frozenset({502, 503, 504})
OPERATION_IN_PROGRESS = "another operation is already in progress"


class ArgoCDClient:
    def __init__(
        self,
        settings: ArgoCDSettings,
        transport: httpx.BaseTransport | None = None,
        *,
        max_attempts: int = 3,
        retry_backoff_seconds: float = 0.5,
        timeout_seconds: float = 30.0,
    ) -> None:
        if not settings.server_url:
            raise TerminalError("argocd.server_url is not configured", code="argocd_not_configured")
        if settings.token is None and not (settings.username and settings.password):
            raise TerminalError(
                "Argo CD needs argocd.token or argocd.username + argocd.password",
                code="argocd_not_configured",
            )
        self._settings = settings
        self._max_attempts = max(1, max_attempts)
        self._retry_backoff = retry_backoff_seconds
        self._session_token: str | None = None
        self._http = httpx.Client(
            base_url=settings.server_url.rstrip("/"),
            transport=transport,
            verify=settings.verify_tls,
            timeout=timeout_seconds,
            headers={"Accept": "application/json"},
        )

    # ---- public API --------------------------------------------------------------------------

    def get_application(self, name: str) -> dict | None:
        try:
            return self._request("GET", f"/api/v1/applications/{_segment(name)}")
        except NotFoundError:
            return None

    def upsert_application(self, manifest: dict) -> dict:
        """Create the Application, or update it when its spec, labels or annotations differ."""
        name = manifest["metadata"]["name"]
        existing = self.get_application(name)
        if existing is None:
            return self._request("POST", "/api/v1/applications", params={"upsert": "true"}, json=manifest)
        if _same_desired_state(existing, manifest):
            return existing
        return self._request("PUT", f"/api/v1/applications/{_segment(name)}", json=manifest)

    def sync(self, name: str, revision: str, prune: bool = True) -> dict:
        body = {"name": name, "revision": revision, "prune": prune}
        return self._request("POST", f"/api/v1/applications/{_segment(name)}/sync", json=body)

    def rollback(self, name: str, history_id: int) -> dict:
        body = {"name": name, "id": history_id}
        return self._request("POST", f"/api/v1/applications/{_segment(name)}/rollback", json=body)

    def resource_tree(self, name: str) -> dict:
        return self._request("GET", f"/api/v1/applications/{_segment(name)}/resource-tree")

    def delete_application(self, name: str, cascade: bool = True) -> None:
        try:
            self._request(
                "DELETE",
                f"/api/v1/applications/{_segment(name)}",
                params={"cascade": "true" if cascade else "false"},
            )
        except NotFoundError:
            return  # already gone is what the caller wanted

    def ping(self) -> None:
        self._request("GET", "/api/version")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ArgoCDClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ---- transport ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, params: dict | None = None, json: Any = None) -> Any:
        relogged_in = False
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(method, path, params=params, json=json, headers=self._auth_headers())
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt < self._max_attempts:
                    self._backoff(attempt)
                    continue
                raise ServiceUnavailable(f"Argo CD at {self._settings.server_url} is unreachable: {exc}") from exc
            except httpx.HTTPError as exc:
                raise ServiceUnavailable(f"Argo CD request {method} {path} failed: {exc}") from exc

            if response.status_code == 401 and self._uses_session() and not relogged_in:
                self._session_token = None  # expired session: log in again, once
                relogged_in = True
                continue
            if response.status_code in RETRYABLE_STATUS and attempt < self._max_attempts:
                self._backoff(attempt)
                continue
            return self._decode(method, path, response)

    def _decode(self, method: str, path: str, response: httpx.Response) -> Any:
        status = response.status_code
        if status < 300:
            return response.json() if response.content else {}
        message = _error_message(response)
        where = f"Argo CD {method} {path}"
        if status in (401, 403):
            raise ArgoCDAuthFailed(f"{where}: {status} {message}")
        if status == 404:
            raise NotFoundError(f"{where}: {message}")
        if status >= 500:
            raise ServiceUnavailable(f"{where}: {status} {message}")
        if OPERATION_IN_PROGRESS in message:
            raise ArgoCDOperationInProgress(f"{where}: {message}")
        raise ArgoCDRequestRejected(f"{where}: {status} {message}", details={"status": status})

    def _auth_headers(self) -> dict[str, str]:
        if self._settings.token is not None:
            return {"Authorization": f"Bearer {self._settings.token.get_secret_value()}"}
        if self._session_token is None:
            self._session_token = self._login()
        return {"Authorization": f"Bearer {self._session_token}"}

    def _uses_session(self) -> bool:
        return self._settings.token is None

    def _login(self) -> str:
        assert self._settings.username and self._settings.password
        body = {"username": self._settings.username, "password": self._settings.password.get_secret_value()}
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.post("/api/v1/session", json=body)
            except httpx.HTTPError as exc:
                if attempt < self._max_attempts:
                    self._backoff(attempt)
                    continue
                raise ServiceUnavailable(f"Argo CD login at {self._settings.server_url} failed: {exc}") from exc
            if response.status_code in RETRYABLE_STATUS and attempt < self._max_attempts:
                self._backoff(attempt)
                continue
            payload = self._decode("POST", "/api/v1/session", response)
            token = payload.get("token") if isinstance(payload, dict) else None
            if not token:
                raise ArgoCDAuthFailed("Argo CD login returned no session token")
            return token

    def _backoff(self, attempt: int) -> None:
        time.sleep(self._retry_backoff * attempt)


def _segment(name: str) -> str:
    return quote(name, safe="")


def _error_message(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(payload, dict):
        return str(payload.get("message") or payload.get("error") or payload)
    return str(payload)


def _same_desired_state(existing: dict, manifest: dict) -> bool:
    """True when an update would not change what Argo CD stores (Argo CD fills no spec defaults we send)."""
    if existing.get("spec") != manifest.get("spec"):
        return False
    for field in ("labels", "annotations"):
        wanted = manifest.get("metadata", {}).get(field) or {}
        current = existing.get("metadata", {}).get(field) or {}
        if any(current.get(key) != value for key, value in wanted.items()):
            return False
    return True
