"""The few Kubernetes API calls the training backend makes, over httpx.

Connection details come from the same place as the rest of the project's Kubernetes access
(``api_client_from_settings``: api_url + token, else the kubeconfig, else the in-cluster service
account): host, bearer token, CA bundle and client certificate.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from control_api.adapters.kubernetes.services import api_client_from_settings
from control_api.errors import TerminalError, TransientError
from control_api.settings import KubernetesSettings

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class KubernetesApiError(TerminalError):
    code = "kubernetes_request_rejected"


class KubernetesApiUnavailable(TransientError):
    code = "kubernetes_unavailable"


def _status_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300]
    return str(body.get("message") or body) if isinstance(body, dict) else str(body)[:300]


class KubernetesApi:
    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    @classmethod
    def from_settings(cls, settings: KubernetesSettings, *, timeout_seconds: float) -> KubernetesApi:
        configuration = api_client_from_settings(settings).configuration
        headers = {"Accept": "application/json"}
        token = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
            "authorization"
        )
        if token:
            headers["Authorization"] = token
        verify: bool | str = configuration.ssl_ca_cert or bool(configuration.verify_ssl)
        cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file else None
        client = httpx.Client(
            base_url=configuration.host, headers=headers, verify=verify, cert=cert, timeout=timeout_seconds
        )
        return cls(client)

    def close(self) -> None:
        self._client.close()

    def _check(self, response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code in RETRYABLE_STATUS:
            raise KubernetesApiUnavailable(f"{what}: HTTP {response.status_code}: {_status_message(response)}")
        if response.status_code >= 400:
            raise KubernetesApiError(
                f"{what}: HTTP {response.status_code}: {_status_message(response)}",
                details={"status": response.status_code},
            )
        return response

    def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise KubernetesApiUnavailable(f"{what}: {error}") from error

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The created object, or None when one of that name exists already (409)."""
        what = f"create {body['kind']} {body['metadata']['name']}"
        response = self._send("POST", path, what, json=body)
        if response.status_code == 409:
            return None
        created: dict[str, Any] = self._check(response, what).json()
        return created

    def get(self, path: str) -> dict[str, Any] | None:
        response = self._send("GET", path, f"get {path}")
        if response.status_code == 404:
            return None
        found: dict[str, Any] = self._check(response, f"get {path}").json()
        return found

    def list(self, path: str, label_selector: str) -> list[dict[str, Any]]:
        response = self._send("GET", path, f"list {path}", params={"labelSelector": label_selector})
        items: list[dict[str, Any]] = self._check(response, f"list {path}").json().get("items") or []
        return items

    def delete(self, path: str, *, propagation_policy: str = "Background") -> bool:
        """True when deleted (or being deleted), False when it was already gone."""
        response = self._send(
            "DELETE",
            path,
            f"delete {path}",
            json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation_policy},
        )
        if response.status_code == 404:
            return False
        self._check(response, f"delete {path}")
        return True

    @contextmanager
    def follow_log(self, path: str) -> Iterator[Iterator[str]]:
        """The pod's log as lines, ending when the container ends (``follow=true``)."""
        with self._client.stream(
            "GET", path, params={"follow": "true"}, timeout=httpx.Timeout(30, read=None)
        ) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response, f"follow {path}")
            yield response.iter_lines()
