"""MlopsClient: one method per control API call, errors raised as ApiError / ServerUnreachable."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from control_api import __version__
from control_api.client.errors import ApiError, ServerUnreachable
from control_api.client.sse import ServerSentEvent, parse_sse

DEFAULT_TIMEOUT_SECONDS = 30.0
# The service sends a keepalive comment every 15 s; a read that waits far longer means a dead link.
STREAM_READ_TIMEOUT_SECONDS = 60.0
METADATA_TIMEOUT_SECONDS = 5.0


def api_error_from(response: httpx.Response) -> ApiError:
    request_id = response.headers.get("x-request-id", "")
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return ApiError(
            response.status_code,
            str(error.get("code") or f"http_{response.status_code}"),
            str(error.get("message") or response.reason_phrase),
            str(error.get("request_id") or request_id),
            error.get("details"),
            body,
        )
    text = response.text.strip()[:500] or response.reason_phrase
    return ApiError(response.status_code, f"http_{response.status_code}", text, request_id, None, body)


def _present(**values: Any) -> dict[str, Any]:
    """The values that were given: a parameter left out lets the server choose its default."""
    return {key: value for key, value in values.items() if value}


def _segment(value: str) -> str:
    return quote(value, safe="")


class MlopsClient:
    def __init__(
        self,
        server: str,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server = server.rstrip("/")
        headers = {"User-Agent": f"mlops-cli/{__version__}"}
        if api_key:
            headers["X-API-Key"] = api_key
        self._http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MlopsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- plumbing ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerUnreachable(self.server, str(exc) or type(exc).__name__) from exc

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._send(method, path, **kwargs)
        if response.status_code >= 400:
            raise api_error_from(response)
        return response.json()

    # ---- deployments ---------------------------------------------------------------------------

    def deploy(self, body: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
        """Start a deploy and return at once (202 with the deployment view); follow it with events()."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._json("POST", "/mlops/deploy", params={"wait": "false"}, json=body, headers=headers)

    def deployment(self, deployment_id: str) -> dict[str, Any]:
        return self._json("GET", f"/mlops/deployments/{_segment(deployment_id)}")

    def deployments(
        self, *, model: str | None = None, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if model:
            params["model"] = model
        if status:
            params["status"] = status
        return self._json("GET", "/mlops/deployments", params=params)

    def retry(self, deployment_id: str) -> dict[str, Any]:
        return self._json("POST", f"/mlops/deployments/{_segment(deployment_id)}/retry")

    def cancel(self, deployment_id: str) -> dict[str, Any]:
        return self._json("POST", f"/mlops/deployments/{_segment(deployment_id)}/cancel")

    def promote(self, deployment_id: str) -> dict[str, Any]:
        """Promote a running canary now (202 with the deployment view); follow it with events()."""
        return self._json("POST", f"/mlops/deployments/{_segment(deployment_id)}/promote")

    def abort(self, deployment_id: str) -> dict[str, Any]:
        """Abort a running canary: the stable version is restored alone (202 with the deployment view)."""
        return self._json("POST", f"/mlops/deployments/{_segment(deployment_id)}/abort")

    # ---- models --------------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        return self._json("GET", "/mlops/models")

    def model(self, name: str, *, namespace: str | None = None, endpoint: str | None = None) -> dict[str, Any]:
        params = _present(namespace=namespace, endpoint=endpoint)
        return self._json("GET", f"/mlops/models/{_segment(name)}", params=params)

    def history(
        self, name: str, *, namespace: str | None = None, endpoint: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        params = {"limit": limit, **_present(namespace=namespace, endpoint=endpoint)}
        return self._json("GET", f"/mlops/models/{_segment(name)}/history", params=params)

    def rollback(
        self, name: str, *, version: str | None = None, namespace: str | None = None, endpoint: str | None = None
    ) -> dict[str, Any]:
        body = _present(version=version, namespace=namespace, endpoint_name=endpoint)
        return self._json("POST", f"/mlops/models/{_segment(name)}/rollback", params={"wait": "false"}, json=body)

    def deploy_version(
        self,
        name: str,
        version: str,
        *,
        namespace: str | None = None,
        endpoint: str | None = None,
        replicas: int | None = None,
        strategy: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = _present(namespace=namespace, endpoint_name=endpoint, strategy=strategy)
        if replicas is not None:
            body["deployment_config"] = {"replicas": replicas}
        path = f"/mlops/models/{_segment(name)}/versions/{_segment(version)}/deploy"
        return self._json("POST", path, params={"wait": "false"}, json=body)

    def undeploy(self, name: str, *, namespace: str | None = None, endpoint: str | None = None) -> dict[str, Any]:
        params = {"wait": "false", **_present(namespace=namespace, endpoint=endpoint)}
        return self._json("DELETE", f"/mlops/models/{_segment(name)}/deployment", params=params)

    def endpoints(self, *, namespace: str | None = None, model: str | None = None) -> dict[str, Any]:
        return self._json("GET", "/mlops/endpoints", params=_present(namespace=namespace, model=model))

    # ---- platform ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The platform status body; an unhealthy platform (503 with components) is an answer, not an error."""
        response = self._send("GET", "/mlops/status")
        if response.status_code == 503:
            try:
                body = response.json()
            except ValueError:
                body = None
            if isinstance(body, dict) and "components" in body:
                return body
        if response.status_code >= 400:
            raise api_error_from(response)
        return response.json()

    def model_metadata(self, url: str) -> dict[str, Any] | None:
        """GET a served model's /metadata; None when it does not answer (the caller falls back to a generic example).

        Sent without the control API key: the model server is another party.
        """
        try:
            response = httpx.get(url, timeout=METADATA_TIMEOUT_SECONDS)
            if response.status_code != 200:
                return None
            body = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return body if isinstance(body, dict) else None

    # ---- event stream --------------------------------------------------------------------------

    def events(self, deployment_id: str, *, after: int | None = None, reconnects: int = 5) -> Iterator[ServerSentEvent]:
        """Yield the deployment's events until ``end``; a dropped connection resumes from the last event id."""
        path = f"/mlops/deployments/{_segment(deployment_id)}/events"
        last_id = after
        failures = 0
        timeout = httpx.Timeout(DEFAULT_TIMEOUT_SECONDS, read=STREAM_READ_TIMEOUT_SECONDS)
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_id is not None:
                headers["Last-Event-ID"] = str(last_id)
            try:
                with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise api_error_from(response)
                    for event in parse_sse(response.iter_lines()):
                        failures = 0
                        if event.id is not None and event.id.isdigit():
                            last_id = int(event.id)
                        yield event
                        if event.event == "end":
                            return
                reason = "the stream closed before its end event"
            except httpx.TransportError as exc:
                reason = str(exc) or type(exc).__name__
            failures += 1
            if failures > reconnects:
                raise ServerUnreachable(self.server, reason)
            time.sleep(min(0.5 * 2 ** (failures - 1), 5.0))
