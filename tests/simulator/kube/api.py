"""The Kubernetes REST subset clients of the simulated cluster read, as a FastAPI app.

Paths follow the API conventions (api-concepts): core objects under /api/v1, grouped ones under
/apis/{group}/{version}; namespaced GET of one object or a list (``labelSelector``, ``fieldSelector``);
pod logs (``container``, ``tailLines``, ``previous``) as text/plain. The pods/proxy subresource
(``Cluster.proxy_pod``) for every method ProxyREST connects. Lists are ``<Kind>List`` objects
whose items carry no kind/apiVersion, as the API server serialises them. Errors are ``Status`` objects.
Every request needs ``Authorization: Bearer <token>`` (anonymous access disabled); a wrong or missing
token is 401. With an RBAC policy (rbac.py), a request its roles do not allow is 403. Test controls under
/_sim/kube need no token.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from tests.simulator.kube.cluster import Cluster
from tests.simulator.kube.rbac import RbacPolicy
from tests.simulator.kube.store import KubeError, plural_resource

# (group/version, resource plural) -> kind
RESOURCES: dict[tuple[str, str], str] = {
    ("v1", "pods"): "Pod",
    ("v1", "services"): "Service",
    ("v1", "events"): "Event",
    ("v1", "configmaps"): "ConfigMap",
    ("v1", "secrets"): "Secret",
    ("v1", "namespaces"): "Namespace",
    ("apps/v1", "deployments"): "Deployment",
    ("apps/v1", "replicasets"): "ReplicaSet",
    ("autoscaling/v2", "horizontalpodautoscalers"): "HorizontalPodAutoscaler",
    ("policy/v1", "poddisruptionbudgets"): "PodDisruptionBudget",
    ("batch/v1", "jobs"): "Job",
}
# Kinds a client may create and delete over HTTP (the others are written by Argo CD in process).
WRITABLE_KINDS = frozenset({"Job", "ConfigMap", "Secret"})
SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0",
    "gitCommit": "sim",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.4",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def status_response(error: KubeError, details: dict | None = None) -> JSONResponse:
    body = error.as_status()
    if details:
        body["details"] = details
    return JSONResponse(body, status_code=error.status)


def create_app(cluster: Cluster, *, token: str, rbac: RbacPolicy | None = None) -> FastAPI:
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.requests = []
    app.state.refused = []  # (method, path, message) of requests RBAC refused
    counter = itertools.count()

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        path = request.url.path
        if path.startswith("/_sim/"):
            return await call_next(request)
        app.state.requests.append((request.method, path))
        faults = cluster.faults
        if faults.api_unauthorized or request.headers.get("authorization") != f"Bearer {token}":
            return status_response(KubeError(401, "Unauthorized", "Unauthorized"))
        if rbac is not None:
            try:
                rbac.authorize(request.method, path, dict(request.query_params))
            except KubeError as error:
                app.state.refused.append((request.method, path, error.message))
                return status_response(error)
        if faults.api_flaky_5xx and next(counter) % 2 == 0:
            return status_response(
                KubeError(503, "ServiceUnavailable", "the server is currently unable to handle the request")
            )
        try:
            return await call_next(request)
        except KubeError as error:
            return status_response(error)

    @app.exception_handler(KubeError)
    async def kube_error(request: Request, error: KubeError) -> JSONResponse:
        return status_response(error)

    @app.get("/version")
    @app.get("/version/")  # the path client libraries generated from the OpenAPI spec use
    def version() -> dict:
        return SERVER_VERSION

    def kind_of(group_version: str, resource: str) -> str:
        kind = RESOURCES.get((group_version, resource))
        if kind is None:
            raise KubeError(404, "NotFound", "the server could not find the requested resource")
        return kind

    def get_one(group_version: str, resource: str, namespace: str | None, name: str) -> JSONResponse:
        kind = kind_of(group_version, resource)
        obj = cluster.get(kind, namespace, name)
        if obj is None:
            error = KubeError(404, "NotFound", f'{plural_resource(kind)} "{name}" not found')
            return status_response(
                error,
                {"name": name, "group": group_version.split("/")[0] if "/" in group_version else "", "kind": resource},
            )
        return JSONResponse(obj)

    def list_all(group_version: str, resource: str, namespace: str | None, request: Request) -> JSONResponse:
        kind = kind_of(group_version, resource)
        label_selector = request.query_params.get("labelSelector")
        field_selector = request.query_params.get("fieldSelector")
        try:
            items = cluster.store.list(kind, namespace, label_selector, field_selector)
        except (KeyError, ValueError) as error:
            raise KubeError(400, "BadRequest", f"unable to parse requirement: {error}") from error
        for item in items:
            cluster.check_out(f"list {kind}", item)
        stripped: list[dict[str, Any]] = [
            {k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in items
        ]
        return JSONResponse(
            {
                "kind": f"{kind}List",
                "apiVersion": group_version,
                "metadata": {"resourceVersion": str(cluster.store.resource_version)},
                "items": stripped,
            }
        )

    async def create(group_version: str, resource: str, namespace: str, request: Request) -> JSONResponse:
        kind = kind_of(group_version, resource)
        if kind not in WRITABLE_KINDS:
            raise KubeError(405, "MethodNotAllowed", f"the simulator does not serve POST for {resource}")
        try:
            body = await request.json()
        except ValueError as error:
            raise KubeError(400, "BadRequest", f"the body of the request was in an unknown format: {error}") from error
        if not isinstance(body, dict):
            raise KubeError(400, "BadRequest", "the body of the request was in an unknown format")
        if body.get("kind") != kind or body.get("apiVersion") != group_version:
            raise KubeError(
                400,
                "BadRequest",
                f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
                f"({group_version})"
                if body.get("apiVersion") != group_version
                else f"kind {body.get('kind')} does not match {kind}",
            )
        metadata = body.setdefault("metadata", {})
        if metadata.get("namespace", namespace) != namespace:
            raise KubeError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match the namespace sent on the request",
            )
        metadata["namespace"] = namespace
        return JSONResponse(cluster.create(body), status_code=201)

    async def delete(group_version: str, resource: str, namespace: str, name: str, request: Request) -> JSONResponse:
        kind = kind_of(group_version, resource)
        if kind not in WRITABLE_KINDS:
            raise KubeError(405, "MethodNotAllowed", f"the simulator does not serve DELETE for {resource}")
        policy = request.query_params.get("propagationPolicy")
        raw = await request.body()
        if raw:  # DeleteOptions in the body, as client libraries send it
            try:
                options = json.loads(raw)
            except ValueError as error:
                raise KubeError(400, "BadRequest", f"invalid DeleteOptions: {error}") from error
            policy = options.get("propagationPolicy", policy)
        if policy not in (None, "Background", "Foreground", "Orphan"):  # DeleteOptions are validated first
            raise KubeError(
                400,
                "BadRequest",
                f'DeleteOptions.meta.k8s.io "" is invalid: propagationPolicy: Unsupported value: "{policy}": '
                'supported values: "Foreground", "Background", "Orphan"',
            )
        obj = cluster.get(kind, namespace, name)
        if obj is None or not cluster.delete(kind, namespace, name, propagation_policy=policy):
            return status_response(
                KubeError(404, "NotFound", f'{plural_resource(kind)} "{name}" not found'),
                {"name": name, "group": group_version.split("/")[0] if "/" in group_version else "", "kind": resource},
            )
        remaining = cluster.get(kind, namespace, name)
        if remaining is not None:  # foreground deletion: the object stays until its dependents are gone
            return JSONResponse(remaining, status_code=200)
        return JSONResponse(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {
                    "name": name,
                    "group": group_version.split("/")[0] if "/" in group_version else "",
                    "kind": resource,
                    "uid": obj["metadata"]["uid"],
                },
            }
        )

    @app.get("/api/v1/namespaces/{namespace}/pods/{name}/log", response_model=None)
    def pod_log(
        namespace: str,
        name: str,
        container: str | None = None,
        tailLines: int | None = None,
        previous: bool = False,
        follow: bool = False,
    ) -> PlainTextResponse | StreamingResponse:
        if follow and not previous:
            return StreamingResponse(
                cluster.follow_pod_log(namespace, name, container=container), media_type="text/plain"
            )
        return PlainTextResponse(
            cluster.pod_log(namespace, name, container=container, tail_lines=tailLines, previous=previous)
        )

    # pods/proxy: ConnectMethods of pkg/registry/core/pod/rest/subresources.go ProxyREST.
    proxy_methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

    async def pod_proxy(namespace: str, name: str, path: str, request: Request) -> Response:
        # The apiserver's getRequestOptions gives the subpath a leading slash, and keeps a trailing one.
        body = await request.body()
        status, headers, content = await run_in_threadpool(
            cluster.proxy_pod,
            namespace,
            name,
            path,
            method=request.method,
            query=request.url.query,
            headers=dict(request.headers),
            body=body,
        )
        response = Response(content=content, status_code=status)
        for key, value in headers:
            response.headers.append(key, value)
        return response

    @app.api_route("/api/v1/namespaces/{namespace}/pods/{name}/proxy", methods=proxy_methods)
    async def pod_proxy_root(namespace: str, name: str, request: Request) -> Response:
        return await pod_proxy(namespace, name, "/", request)

    @app.api_route("/api/v1/namespaces/{namespace}/pods/{name}/proxy/{path:path}", methods=proxy_methods)
    async def pod_proxy_path(namespace: str, name: str, path: str, request: Request) -> Response:
        return await pod_proxy(namespace, name, "/" + path, request)

    @app.post("/api/v1/namespaces/{namespace}/{resource}")
    async def core_create(namespace: str, resource: str, request: Request) -> JSONResponse:
        return await create("v1", resource, namespace, request)

    @app.delete("/api/v1/namespaces/{namespace}/{resource}/{name}")
    async def core_delete(namespace: str, resource: str, name: str, request: Request) -> JSONResponse:
        return await delete("v1", resource, namespace, name, request)

    @app.post("/apis/{group}/{version}/namespaces/{namespace}/{resource}")
    async def group_create(group: str, version: str, namespace: str, resource: str, request: Request) -> JSONResponse:
        return await create(f"{group}/{version}", resource, namespace, request)

    @app.delete("/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}")
    async def group_delete(
        group: str, version: str, namespace: str, resource: str, name: str, request: Request
    ) -> JSONResponse:
        return await delete(f"{group}/{version}", resource, namespace, name, request)

    @app.get("/api/v1/namespaces/{namespace}/{resource}/{name}")
    def core_get(namespace: str, resource: str, name: str) -> JSONResponse:
        return get_one("v1", resource, namespace, name)

    @app.get("/api/v1/namespaces/{namespace}/{resource}")
    def core_list(namespace: str, resource: str, request: Request) -> JSONResponse:
        return list_all("v1", resource, namespace, request)

    @app.get("/api/v1/namespaces/{name}")
    def namespace_get(name: str) -> JSONResponse:
        return get_one("v1", "namespaces", None, name)

    @app.get("/apis/{group}/{version}/namespaces/{namespace}/{resource}/{name}")
    def group_get(group: str, version: str, namespace: str, resource: str, name: str) -> JSONResponse:
        return get_one(f"{group}/{version}", resource, namespace, name)

    @app.get("/apis/{group}/{version}/namespaces/{namespace}/{resource}")
    def group_list(group: str, version: str, namespace: str, resource: str, request: Request) -> JSONResponse:
        return list_all(f"{group}/{version}", resource, namespace, request)

    @app.post("/_sim/kube/faults")
    async def set_faults(request: Request) -> JSONResponse:
        switches = await request.json()
        if not isinstance(switches, dict):
            return JSONResponse({"error": "body must be a JSON object of fault switches"}, status_code=400)
        try:
            faults = cluster.set_faults(**switches)
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        return JSONResponse(vars(faults))

    @app.delete("/_sim/kube/faults")
    def clear_faults() -> JSONResponse:
        cluster.clear_faults()
        return JSONResponse(vars(cluster.faults))

    return app
