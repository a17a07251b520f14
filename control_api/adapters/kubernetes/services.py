"""Read-only view of the cluster for the deploy pipeline: where a Service is reachable, and why a
rollout is stuck (Deployment status, Pods, Events).

Objects are returned as the plain JSON the API server sent (camelCase keys, e.g.
``status.loadBalancer.ingress``), not as the client's generated model classes, so callers and error
messages see the same field names as ``kubectl get -o json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, cast

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from control_api.errors import DeploymentTimedOut, ServiceUnavailable, TerminalError, TransientError
from control_api.settings import KubernetesSettings

RETRYABLE_STATUS = frozenset({502, 503, 504})


class KubernetesAuthFailed(TerminalError):
    code = "kubernetes_auth_failed"


class KubernetesRequestRejected(TerminalError):
    code = "kubernetes_request_rejected"


def api_client_from_settings(settings: KubernetesSettings) -> k8s_client.ApiClient:
    """api_url+token when given, else the kubeconfig (file/context), else in-cluster config."""
    configuration = k8s_client.Configuration()
    if settings.api_url:
        configuration.host = settings.api_url.rstrip("/")
        if settings.token is not None:
            configuration.api_key = {"BearerToken": settings.token.get_secret_value()}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
    else:
        try:
            if settings.kubeconfig is None and settings.context is None:
                try:
                    k8s_config.load_incluster_config(client_configuration=configuration)
                except ConfigException:
                    k8s_config.load_kube_config(client_configuration=configuration)
            else:
                k8s_config.load_kube_config(
                    config_file=str(settings.kubeconfig) if settings.kubeconfig else None,
                    context=settings.context,
                    client_configuration=configuration,
                )
        except (ConfigException, OSError) as exc:
            raise TerminalError(f"no usable Kubernetes configuration: {exc}", code="kubernetes_not_configured") from exc
    # urllib3 retries only connection failures here; 5xx answers are retried in KubernetesReader._call.
    configuration.retries = urllib3.util.Retry(total=2, connect=2, read=0, status=0, backoff_factor=0.2)
    return k8s_client.ApiClient(configuration)


class KubernetesReader:
    def __init__(
        self,
        settings: KubernetesSettings,
        api_client: k8s_client.ApiClient | None = None,
        *,
        max_attempts: int = 3,
        retry_backoff_seconds: float = 0.5,
        timeout_seconds: float = 30.0,
    ) -> None:
        self._api_client = api_client or api_client_from_settings(settings)
        self._core = k8s_client.CoreV1Api(self._api_client)
        self._apps = k8s_client.AppsV1Api(self._api_client)
        self._version = k8s_client.VersionApi(self._api_client)
        self._max_attempts = max(1, max_attempts)
        self._retry_backoff = retry_backoff_seconds
        self._timeout = timeout_seconds

    def get_service(self, namespace: str, name: str) -> dict | None:
        return self._call(
            f"get Service {namespace}/{name}",
            lambda **kw: self._core.read_namespaced_service(name, namespace, **kw),
            missing_ok=True,
        )

    def service_external_address(self, namespace: str, name: str) -> str | None:
        """The LoadBalancer's IP, or its hostname (AWS load balancers only have hostnames)."""
        service = self.get_service(namespace, name)
        if service is None:
            return None
        ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        for entry in ingress:
            address = entry.get("ip") or entry.get("hostname")
            if address:
                return address
        return None

    def get_deployment(self, namespace: str, name: str) -> dict | None:
        return self._call(
            f"get Deployment {namespace}/{name}",
            lambda **kw: self._apps.read_namespaced_deployment(name, namespace, **kw),
            missing_ok=True,
        )

    def pod_log(
        self, namespace: str, name: str, *, container: str | None = None, tail_lines: int = 20, previous: bool = False
    ) -> str:
        """The pod's last log lines; empty when there are none (a container that never started)."""
        kwargs: dict[str, Any] = {"tail_lines": tail_lines, "previous": previous}
        if container:
            kwargs["container"] = container
        try:
            # Without preloading, the client returns the raw urllib3 response, not the str it is annotated with.
            response = cast(
                urllib3.HTTPResponse,
                self._core.read_namespaced_pod_log(
                    name, namespace, _preload_content=False, _request_timeout=self._timeout, **kwargs
                ),
            )
        except ApiException as exc:
            if exc.status in (400, 404):  # no such pod, or no (previous) container to read from
                return ""
            raise _translate_api_exception(f"read log of Pod {namespace}/{name}", exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceUnavailable(f"Kubernetes API unreachable (log of Pod {namespace}/{name}): {exc}") from exc
        return (response.data or b"").decode("utf-8", "replace")

    def deployment_status(self, namespace: str, name: str) -> dict | None:
        """The Deployment's ``status`` (replicas, readyReplicas, conditions, ...), None if there is none."""
        deployment = self._call(
            f"get Deployment {namespace}/{name}",
            lambda **kw: self._apps.read_namespaced_deployment(name, namespace, **kw),
            missing_ok=True,
        )
        if deployment is None:
            return None
        return deployment.get("status") or {}

    def list_pods(self, namespace: str, label_selector: str | None = None) -> list[dict]:
        pods = self._call(
            f"list Pods in {namespace}",
            lambda **kw: self._core.list_namespaced_pod(namespace, label_selector=label_selector, **kw),
        )
        return pods.get("items") or []

    def pod_proxy_get(self, namespace: str, pod: str, port: str, path: str) -> str:
        """``GET path`` on the pod's own ``port`` (a number) through the API server's pod
        proxy (RBAC: ``get`` on ``pods/proxy``): one replica's answer, not the Service's choice."""
        what = f"GET {path} of Pod {namespace}/{pod} through the pod proxy"
        try:
            response = cast(
                urllib3.HTTPResponse,
                self._core.connect_get_namespaced_pod_proxy_with_path(
                    f"{pod}:{port}",
                    namespace,
                    path.lstrip("/"),
                    _preload_content=False,
                    _request_timeout=self._timeout,
                ),
            )
        except ApiException as exc:
            raise _translate_api_exception(what, exc) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise ServiceUnavailable(f"Kubernetes API unreachable ({what}): {exc}") from exc
        return (response.data or b"").decode("utf-8", "replace")

    def list_events(self, namespace: str, field_selector: str | None = None) -> list[dict]:
        events = self._call(
            f"list Events in {namespace}",
            lambda **kw: self._core.list_namespaced_event(namespace, field_selector=field_selector, **kw),
        )
        return events.get("items") or []

    def ping(self) -> None:
        self._call("get version", lambda **kw: self._version.get_code(**kw))

    def close(self) -> None:
        self._api_client.close()

    # ---- error translation -------------------------------------------------------------------

    def _call(self, what: str, request: Callable[..., Any], *, missing_ok: bool = False) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = request(_preload_content=False, _request_timeout=self._timeout)
                return json.loads(response.data or b"{}")
            except ApiException as exc:
                if exc.status == 404 and missing_ok:
                    return None
                if exc.status in RETRYABLE_STATUS and attempt < self._max_attempts:
                    time.sleep(self._retry_backoff * attempt)
                    continue
                raise _translate_api_exception(what, exc) from exc
            except urllib3.exceptions.HTTPError as exc:
                raise ServiceUnavailable(f"Kubernetes API unreachable ({what}): {exc}") from exc
            except ValueError as exc:
                raise ServiceUnavailable(f"Kubernetes API sent a non-JSON answer ({what}): {exc}") from exc


def _translate_api_exception(what: str, exc: ApiException) -> Exception:
    reason = _api_message(exc)
    message = f"Kubernetes {what}: {exc.status} {reason}"
    if exc.status in (401, 403):
        return KubernetesAuthFailed(message)
    if exc.status is None or exc.status == 0 or exc.status >= 500:
        return ServiceUnavailable(message)
    return KubernetesRequestRejected(message, details={"status": exc.status})


def _api_message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "").get("message") or exc.reason or ""
    except (TypeError, ValueError, AttributeError):
        return exc.reason or ""


def wait_for_external_address(
    reader: KubernetesReader, namespace: str, name: str, timeout: float, poll: float = 2.0, first_poll: float = 0.1
) -> str:
    """Poll until the Service has a load-balancer IP or hostname; a missing Service counts as not yet.

    Polls start ``first_poll`` apart and double up to ``poll``: usually the address is already
    there when the app is Healthy, and a cloud load balancer that takes minutes is asked rarely.
    """
    deadline = time.monotonic() + timeout
    last_error: TransientError | None = None
    delay = min(first_poll, poll)
    while True:
        try:
            address = reader.service_external_address(namespace, name)
            last_error = None
        except TransientError as exc:  # an API server blip must not fail the deploy before the deadline
            address, last_error = None, exc
        if address:
            return address
        if time.monotonic() >= deadline:
            suffix = f" (last error: {last_error})" if last_error else ""
            raise DeploymentTimedOut(
                f"service {namespace}/{name} has no external IP or hostname after {timeout:g} s{suffix}",
                details={"namespace": namespace, "service": name},
            )
        time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(poll, delay * 2)
