"""HTTP face of the simulator: the Argo CD and Kubernetes API subsets, each body contract-checked.

A contract violation (in what a client sent or in what the simulator is about to answer) is answered
with 500 and recorded in ``ContractChecker.violations``; tests assert that list stays empty.
Test-only controls live under ``/_sim/`` and bypass auth and fault injection.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import asdict
from typing import Any, Callable

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from tests.simulator.contracts import ContractChecker, ContractViolation
from tests.simulator.engine import ArgoCDSimulator, SimError

# gRPC codes Argo CD's gateway puts in runtimeError.code, by HTTP status.
GRPC_CODES = {400: 3, 401: 16, 403: 7, 404: 5, 409: 6, 500: 13, 503: 14}
ARGOCD_PUBLIC_PATHS = {"/api/v1/session", "/api/version"}
KUBERNETES_PREFIXES = ("/api/v1/namespaces/", "/apis/", "/version")
KUBERNETES_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 500: "InternalError", 503: "ServiceUnavailable"}


def _is_kubernetes(path: str) -> bool:
    return path.startswith(KUBERNETES_PREFIXES)


def _argocd_error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status, content={"error": message, "code": GRPC_CODES.get(status, 2), "message": message}
    )


def _kubernetes_error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status,
        content={"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                 "reason": KUBERNETES_REASONS.get(status, "Unknown"), "code": status},
    )


def create_app(simulator: ArgoCDSimulator, checker: ContractChecker) -> FastAPI:
    app = FastAPI(title="Argo CD + Kubernetes simulator", docs_url=None, redoc_url=None, openapi_url=None)
    request_counter = itertools.count(1)
    counter_lock = threading.Lock()
    app.state.requests = []  # (method, path) of every API request, for tests that count retries

    def error_response(path: str, status: int, message: str) -> JSONResponse:
        return _kubernetes_error(status, message) if _is_kubernetes(path) else _argocd_error(status, message)

    @app.middleware("http")
    async def faults_and_auth(request: Request, call_next: Callable) -> Any:
        path = request.url.path
        if path.startswith("/_sim/"):
            return await call_next(request)
        app.state.requests.append((request.method, path))
        faults = simulator.faults
        if faults.flaky_5xx:
            with counter_lock:
                count = next(request_counter)
            if count % 2 == 1:
                return error_response(path, 503, "simulated flaky upstream")
        if faults.unauthorized:
            return error_response(path, 401, "invalid session: token is expired")
        if _is_kubernetes(path):
            allowed = {simulator.kubernetes_token}
        elif path in ARGOCD_PUBLIC_PATHS:
            allowed = None
        else:
            allowed = simulator.argocd_tokens
        if allowed is not None:
            header = request.headers.get("authorization", "")
            token = header[len("Bearer "):] if header.startswith("Bearer ") else None
            if token not in allowed:
                return error_response(path, 401, "no session information" if token is None else "invalid session")
        return await call_next(request)

    @app.exception_handler(SimError)
    async def sim_error(request: Request, exc: SimError) -> JSONResponse:
        return error_response(request.url.path, exc.status, exc.message)

    @app.exception_handler(ContractViolation)
    async def contract_violation(request: Request, exc: ContractViolation) -> JSONResponse:
        return error_response(request.url.path, 500, f"contract violation: {exc}")

    @app.exception_handler(RequestValidationError)
    async def unparseable(request: Request, exc: RequestValidationError) -> JSONResponse:
        where = f"request {request.method} {request.url.path}"
        try:
            checker._record(where, "JSON body", [str(e) for e in exc.errors()])
        except ContractViolation as violation:
            return error_response(request.url.path, 500, f"contract violation: {violation}")
        return error_response(request.url.path, 400, "invalid request")

    def checked_in(method: str, path: str, route: str, body: Any) -> None:
        definition = checker.swagger.operation_schema(route, method, response=False)
        checker.argocd(f"request {method} {path}", definition, body, request=True)

    def checked_out(method: str, path: str, route: str, body: Any) -> Any:
        definition = checker.swagger.operation_schema(route, method, response=True)
        checker.argocd(f"response {method} {path}", definition, body, request=False)
        return body

    # ---- Argo CD -----------------------------------------------------------------------------

    @app.post("/api/v1/session")
    def create_session(body: Any = Body(...)) -> Any:
        route = "/api/v1/session"
        checked_in("POST", route, route, body)
        return checked_out("POST", route, route, {"token": simulator.login(body)})

    @app.get("/api/version")
    def version() -> Any:
        route = "/api/version"
        return checked_out("GET", route, route, {"Version": "v3.6.0+simulator", "KustomizeVersion": "v5.5.0"})

    @app.post("/api/v1/applications")
    def create_application(body: Any = Body(...), upsert: bool = False) -> Any:
        route = "/api/v1/applications"
        checked_in("POST", route, route, body)
        return checked_out("POST", route, route, simulator.create_application(body, upsert))

    @app.get("/api/v1/applications/{name}")
    def get_application(name: str, refresh: str | None = None) -> Any:
        path = f"/api/v1/applications/{name}"
        return checked_out("GET", path, "/api/v1/applications/{name}", simulator.get_application(name, bool(refresh)))

    @app.put("/api/v1/applications/{name}")
    def update_application(name: str, body: Any = Body(...)) -> Any:
        path, route = f"/api/v1/applications/{name}", "/api/v1/applications/{application.metadata.name}"
        checked_in("PUT", path, route, body)
        return checked_out("PUT", path, route, simulator.update_application(name, body))

    @app.delete("/api/v1/applications/{name}")
    def delete_application(name: str, cascade: bool = True) -> Any:
        path = f"/api/v1/applications/{name}"
        simulator.delete_application(name, cascade)
        return checked_out("DELETE", path, "/api/v1/applications/{name}", {})

    @app.post("/api/v1/applications/{name}/sync")
    def sync_application(name: str, body: Any = Body(...)) -> Any:
        path, route = f"/api/v1/applications/{name}/sync", "/api/v1/applications/{name}/sync"
        checked_in("POST", path, route, body)
        return checked_out("POST", path, route, simulator.sync(name, body))

    @app.post("/api/v1/applications/{name}/rollback")
    def rollback_application(name: str, body: Any = Body(...)) -> Any:
        path, route = f"/api/v1/applications/{name}/rollback", "/api/v1/applications/{name}/rollback"
        checked_in("POST", path, route, body)
        return checked_out("POST", path, route, simulator.rollback(name, body))

    @app.get("/api/v1/applications/{name}/resource-tree")
    def resource_tree(name: str) -> Any:
        path, route = f"/api/v1/applications/{name}/resource-tree", "/api/v1/applications/{applicationName}/resource-tree"
        return checked_out("GET", path, route, simulator.resource_tree(name))

    # ---- Kubernetes --------------------------------------------------------------------------

    def kube_checked(path: str, obj: dict) -> dict:
        checker.kubernetes(f"response GET {path}", obj)
        return obj

    @app.get("/version")
    @app.get("/version/")
    def kubernetes_version() -> Any:
        return {"major": "1", "minor": "32", "gitVersion": "v1.32.0-simulator", "platform": "linux/amd64"}

    @app.get("/api/v1/namespaces/{namespace}/services/{name}")
    def get_service(namespace: str, name: str) -> Any:
        service = {"apiVersion": "v1", "kind": "Service", **simulator.kube_service(namespace, name)}
        return kube_checked(f"/api/v1/namespaces/{namespace}/services/{name}", service)

    @app.get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
    def get_deployment(namespace: str, name: str) -> Any:
        deployment = {"apiVersion": "apps/v1", "kind": "Deployment", **simulator.kube_deployment(namespace, name)}
        return kube_checked(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}", deployment)

    @app.get("/api/v1/namespaces/{namespace}/pods")
    def list_pods(namespace: str, labelSelector: str | None = None) -> Any:  # noqa: N803 - Kubernetes' name
        pods = {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": "1"},
                "items": simulator.kube_pods(namespace, labelSelector)}
        return kube_checked(f"/api/v1/namespaces/{namespace}/pods", pods)

    @app.get("/api/v1/namespaces/{namespace}/events")
    def list_events(namespace: str, fieldSelector: str | None = None) -> Any:  # noqa: N803 - Kubernetes' name
        events = {"apiVersion": "v1", "kind": "EventList", "metadata": {"resourceVersion": "1"},
                  "items": simulator.kube_events(namespace, fieldSelector)}
        return kube_checked(f"/api/v1/namespaces/{namespace}/events", events)

    # ---- test controls -----------------------------------------------------------------------

    @app.post("/_sim/faults")
    def set_faults(body: dict = Body(...)) -> Any:
        try:
            simulator.set_faults(**body)
        except ValueError as exc:
            return JSONResponse(status_code=400, content={"message": str(exc)})
        return asdict(simulator.faults)

    @app.delete("/_sim/faults")
    def clear_faults() -> Any:
        simulator.clear_faults()
        return asdict(simulator.faults)

    @app.get("/_sim/violations")
    def violations() -> Any:
        return [asdict(v) for v in checker.violations]

    return app
