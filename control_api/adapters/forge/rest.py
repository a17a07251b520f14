"""The HTTP layer shared by every forge: one httpx client, and errors translated at the boundary.

Messages name the method and path of the failed call and the forge's own explanation, never a
header: the token travels only in the Authorization / PRIVATE-TOKEN header.
"""

from __future__ import annotations

from typing import Any

import httpx

from control_api.adapters.forge.errors import ForgeAuthFailed, ForgeRequestRejected, ForgeUnavailable
from control_api.errors import NotFoundError, TerminalError
from control_api.redaction import redact

DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_DETAIL_CHARS = 300


class ForgeRest:
    def __init__(
        self,
        forge_name: str,
        base_url: str,
        auth_headers: dict[str, str],
        secret: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        self._forge_name = forge_name
        self._secret = secret
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Accept": "application/json", "User-Agent": "mlops-control", **auth_headers},
            transport=transport,
            timeout=timeout_seconds,
        )

    def request(
        self, method: str, path: str, *, json: Any = None, params: dict | None = None, accept: tuple[int, ...] = ()
    ) -> httpx.Response:
        """Send a request; statuses in ``accept`` come back to the caller instead of raising."""
        what = f"{self._forge_name} {method} {path}"
        try:
            response = self._client.request(method, path, json=json, params=params)
        except httpx.HTTPError as error:
            raise ForgeUnavailable(f"{what} failed: {self._redact(type(error).__name__ + ': ' + str(error))}") from None
        if response.is_success or response.status_code in accept:
            return response
        raise self._error_for(what, response)

    def close(self) -> None:
        self._client.close()

    def _error_for(self, what: str, response: httpx.Response) -> Exception:
        status = response.status_code
        detail = self._redact(_explanation(response))
        message = f"{what} answered HTTP {status}: {detail}" if detail else f"{what} answered HTTP {status}"
        rate_limited = status == 429 or (status == 403 and response.headers.get("x-ratelimit-remaining") == "0")
        if rate_limited or status >= 500:
            return ForgeUnavailable(message)
        if status in (401, 403):
            return ForgeAuthFailed(f"{message} (check forge.token and its scopes)")
        if status == 404:
            return NotFoundError(message, code="forge_not_found")
        if 400 <= status < 500:
            return ForgeRequestRejected(message)
        return TerminalError(message, code="forge_unexpected_response")

    def _redact(self, text: str) -> str:
        return redact(text, extra=[self._secret])


def _explanation(response: httpx.Response) -> str:
    try:
        payload = response.json()
    except ValueError:
        return response.text.strip()[:MAX_DETAIL_CHARS]
    if isinstance(payload, dict):
        parts = [str(payload.get(key)) for key in ("message", "error", "errors") if payload.get(key)]
        return "; ".join(parts)[:MAX_DETAIL_CHARS]
    return str(payload)[:MAX_DETAIL_CHARS]
