"""Argo CD REST client (the subset of ``/api/v1`` the deploy pipeline needs).

Authentication is either a static API token or a username/password session: the session token is
fetched lazily from ``POST /api/v1/session`` and fetched again once when the server answers 401
(session tokens expire). Every failure leaves this module as a ``control_api.errors`` type:
401/403 -> ``ArgoCDAuthFailed``, 5xx or an unreachable server -> ``ServiceUnavailable`` after a
few bounded retries, a certificate the client cannot verify -> ``ArgoCDTLSFailed``, other refusals
-> ``ArgoCDRequestRejected`` or ``NotFoundError``.

Every per-application request names the AppProject: argocd-server answers 403, not 404, for a
missing Application unless the request names its project (it checks permissions before it reveals
whether an Application exists), so without it a first deploy could not tell "missing" from "forbidden".
"""

from __future__ import annotations

import ssl
import time
from typing import Any
from urllib.parse import quote

import httpx

from control_api.adapters.argocd.errors import (
    ArgoCDAuthFailed,
    ArgoCDOperationInProgress,
    ArgoCDRequestRejected,
    ArgoCDTLSFailed,
)
from control_api.errors import NotFoundError, ServiceUnavailable, TerminalError
from control_api.settings import ArgoCDSettings

# Gateways and an API server that is restarting answer with these; the request never ran.
RETRYABLE_STATUS = frozenset({502, 503, 504})
OPERATION_IN_PROGRESS = "another operation is already in progress"
# Argo CD deletes an Application's resources before the Application itself only while this
# finalizer is on it (its documented cascading deletion); without it a prune orphans them.
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"


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
            verify=_tls_verification(settings),
            timeout=timeout_seconds,
            headers={"Accept": "application/json"},
        )

    # ---- public API --------------------------------------------------------------------------

    @property
    def project(self) -> str:
        return self._settings.project

    def get_application(self, name: str, *, refresh: bool = False) -> dict | None:
        params: dict[str, str] = {"project": self.project}
        if refresh:
            params["refresh"] = "normal"
        try:
            return self._request("GET", f"/api/v1/applications/{_segment(name)}", params=params)
        except NotFoundError:
            return None

    def upsert_application(self, manifest: dict) -> dict:
        """Create the Application, or update it when its spec, labels, annotations or finalizers differ.

        Updates go through ``POST ?upsert=true``: argocd-server then updates the stored Application by
        merging labels and annotations into the stored ones, so metadata that Argo CD or an operator
        put on the Application survives; a PUT would replace it. Finalizers are replaced by what is
        sent, so the ones already there are sent back with ours.
        """
        name = manifest["metadata"]["name"]
        existing = self.get_application(name)
        if existing is not None and (existing.get("metadata") or {}).get("deletionTimestamp"):
            raise ArgoCDApplicationDeleting(name)
        body = _with_finalizers(manifest, existing)
        if existing is not None and _same_desired_state(existing, body):
            return existing
        return self._request("POST", "/api/v1/applications", params={"upsert": "true"}, json=body)

    def sync(self, name: str, revision: str | None, prune: bool = True) -> dict:
        """Request a sync; without ``revision`` Argo CD resolves the target branch's head itself."""
        body: dict[str, Any] = {"name": name, "prune": prune, "project": self.project}
        if revision:
            body["revision"] = revision
        return self._request("POST", f"/api/v1/applications/{_segment(name)}/sync", json=body)

    def rollback(self, name: str, history_id: int) -> dict:
        body = {"name": name, "id": history_id, "project": self.project}
        return self._request("POST", f"/api/v1/applications/{_segment(name)}/rollback", json=body)

    def resource_tree(self, name: str) -> dict:
        return self._request(
            "GET", f"/api/v1/applications/{_segment(name)}/resource-tree", params={"project": self.project}
        )

    def delete_application(self, name: str, cascade: bool = True) -> bool:
        """Ask Argo CD to delete the Application; False when it was already gone.

        Deletion is asynchronous: with ``cascade`` Argo CD sets the resources finalizer, deletes the
        managed resources, and only then removes the Application (``wait_deleted`` follows that).
        """
        try:
            self._request(
                "DELETE",
                f"/api/v1/applications/{_segment(name)}",
                params={"cascade": "true" if cascade else "false", "project": self.project},
            )
        except NotFoundError:
            return False
        return True

    def wait_deleted(self, name: str, timeout: float, poll: float = 0.5) -> None:
        deadline = time.monotonic() + timeout
        while True:
            application = self.get_application(name)
            if application is None:
                return
            if time.monotonic() >= deadline:
                finalizers = (application.get("metadata") or {}).get("finalizers") or []
                raise ArgoCDRequestRejected(
                    f"Argo CD application {name!r} is still being deleted after {timeout:g} s "
                    f"(finalizers: {', '.join(finalizers) or 'none'})",
                    details={"application": name},
                )
            time.sleep(poll)

    def can_i(self, resource: str, action: str, subresource: str) -> bool:
        path = f"/api/v1/account/can-i/{_segment(resource)}/{_segment(action)}/{quote(subresource, safe='/*')}"
        answer = self._request("GET", path)
        return isinstance(answer, dict) and answer.get("value") == "yes"

    def ping(self) -> None:
        """The server answers, its certificate verifies, and the credentials may sync this project's apps.

        ``/api/version`` alone needs no authentication, so it would call a revoked token healthy.
        """
        self._request("GET", "/api/version")
        scope = f"{self.project}/*"
        if not self.can_i("applications", "sync", scope):
            raise ArgoCDAuthFailed(
                f"the Argo CD account may not sync applications in {scope} "
                "(grant it 'applications, sync' and 'applications, get/create/update/delete' on that project)"
            )

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
                _raise_if_tls_failure(self._settings, exc)
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
                _raise_if_tls_failure(self._settings, exc)
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


def _with_finalizers(manifest: dict, existing: dict | None) -> dict:
    body = {**manifest, "metadata": dict(manifest.get("metadata") or {})}
    present = list(((existing or {}).get("metadata") or {}).get("finalizers") or [])
    wanted = list(body["metadata"].get("finalizers") or [])
    body["metadata"]["finalizers"] = present + [f for f in wanted if f not in present]
    return body


def _same_desired_state(existing: dict, body: dict) -> bool:
    """True when an upsert would not change what Argo CD stores: the same spec, our labels and
    annotations already there (others may be too), and the same finalizers."""
    if existing.get("spec") != body.get("spec"):
        return False
    stored = existing.get("metadata") or {}
    wanted = body.get("metadata") or {}
    for field in ("labels", "annotations"):
        current = stored.get(field) or {}
        if any(current.get(key) != value for key, value in (wanted.get(field) or {}).items()):
            return False
    return sorted(stored.get("finalizers") or []) == sorted(wanted.get("finalizers") or [])


def _tls_verification(settings: ArgoCDSettings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        return False
    if settings.ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(settings.ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise TerminalError(
            f"argocd.ca_bundle {settings.ca_bundle} is not a readable PEM file: {exc}", code="argocd_not_configured"
        ) from exc


def _raise_if_tls_failure(settings: ArgoCDSettings, exc: Exception) -> None:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text or "WRONG_VERSION_NUMBER" in text:
        hint = (
            "set argocd.ca_bundle to the PEM of the CA that signed argocd-server's certificate "
            "(by default argocd-server uses a self-signed one)"
            if settings.ca_bundle is None
            else f"the server's certificate is not signed by argocd.ca_bundle {settings.ca_bundle}"
        )
        raise ArgoCDTLSFailed(f"TLS with Argo CD at {settings.server_url} failed: {text}; {hint}") from exc


class ArgoCDApplicationDeleting(ArgoCDRequestRejected):
    """The Application is being deleted (deletionTimestamp set); Argo CD refuses to sync it until it is gone."""

    code = "argocd_application_deleting"

    def __init__(self, name: str) -> None:
        super().__init__(f"Argo CD application {name!r} is being deleted", details={"application": name})
        self.application = name
