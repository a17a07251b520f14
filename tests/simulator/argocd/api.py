"""HTTP face of the simulated Argo CD API server (the grpc-gateway REST routes in swagger.json).

Every request body and query string, and every answer, is checked against swagger.json (and the
Application CRD) by the ContractChecker; request bodies strictly (an unknown field is a violation:
Argo CD would silently drop it). A violation answers 500 and is recorded in ``checker.violations``.
Test controls under ``/_sim/argocd/`` bypass auth and faults.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from tests.simulator.argocd.argocd import ArgoCD
from tests.simulator.argocd.errors import ArgoError
from tests.simulator.contracts import ContractChecker, ContractViolation

PUBLIC_PATHS = {"/api/v1/session", "/api/version"}
VERSION = {
    "Version": "v3.6.0+37ee009",
    "BuildDate": "2026-01-01T00:00:00Z",
    "GitCommit": "37ee009",
    "GitTreeState": "clean",
    "GoVersion": "go1.25.0",
    "Compiler": "gc",
    "Platform": "linux/amd64",
    "KustomizeVersion": "v5.7.0",
    "HelmVersion": "v3.18.4",
    "KubectlVersion": "v0.34.0",
}


def _error(exc: ArgoError) -> JSONResponse:
    return JSONResponse(status_code=exc.http_status, content=exc.body())


def _bool(value: str | None) -> bool | None:
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise ArgoError("InvalidArgument", f"invalid boolean {value!r}")


def create_app(argocd: ArgoCD, checker: ContractChecker) -> FastAPI:
    app = FastAPI(title="Argo CD simulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.requests = []  # (method, path) of every API request, for tests that count calls
    counter = itertools.count(1)
    counter_lock = threading.Lock()
    service = argocd.service

    @app.middleware("http")
    async def faults_and_auth(request: Request, call_next: Callable) -> Any:
        path = request.url.path
        if path.startswith("/_sim/"):
            return await call_next(request)
        app.state.requests.append((request.method, path))
        if argocd.faults.flaky_5xx:
            with counter_lock:
                count = next(counter)
            if count % 2 == 1:
                return _error(ArgoError("Unavailable", "simulated flaky upstream"))
        if argocd.faults.unauthorized:
            return _error(ArgoError("Unauthenticated", "invalid session: token is expired"))
        request.state.account = None
        header = request.headers.get("authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else request.cookies.get("argocd.token")
        if path not in PUBLIC_PATHS:
            if not token:
                return _error(ArgoError("Unauthenticated", "no session information"))
            account = argocd.rbac.account(token)
            if account is None:
                return _error(ArgoError("Unauthenticated", "invalid session: token signature is invalid"))
            request.state.account = account
        return await call_next(request)

    @app.exception_handler(ArgoError)
    async def argo_error(request: Request, exc: ArgoError) -> JSONResponse:
        return _error(exc)

    @app.exception_handler(ContractViolation)
    async def contract_violation(request: Request, exc: ContractViolation) -> JSONResponse:
        return _error(ArgoError("Internal", f"contract violation: {exc}"))

    def operation(route: str, method: str) -> dict:
        return checker.swagger.paths[route][method.lower()]

    def check_query(request: Request, route: str) -> None:
        known = {p["name"] for p in operation(route, request.method).get("parameters", []) if p.get("in") == "query"}
        unknown = sorted(set(request.query_params) - known)
        checker._record(
            f"request {request.method} {request.url.path}",
            "query parameters",
            [f"unknown query parameter {name!r}" for name in unknown],
        )

    async def body_of(request: Request, route: str) -> Any:
        check_query(request, route)
        raw = await request.body()
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            raise ArgoError("InvalidArgument", "invalid character in request body: not JSON") from None
        where = f"request {request.method} {request.url.path}"
        definition = checker.swagger.operation_schema(route, request.method, response=False)
        checker.argocd(where, definition, body, request=True)
        return body

    def answer(request: Request, route: str, body: Any) -> Any:
        definition = checker.swagger.operation_schema(route, request.method, response=True)
        checker.argocd(f"response {request.method} {request.url.path}", definition, body, request=False)
        return body

    # ---- session, version, account ----------------------------------------------------------

    @app.post("/api/v1/session")
    async def create_session(request: Request) -> Any:
        route = "/api/v1/session"
        body = await body_of(request, route)
        token = argocd.rbac.login(body.get("username", ""), body.get("password", ""))
        if token is None:
            raise ArgoError("Unauthenticated", "Invalid username or password")
        return answer(request, route, {"token": token})

    @app.get("/api/version")
    def version(request: Request) -> Any:
        route = "/api/version"
        check_query(request, route)
        return answer(request, route, dict(VERSION))

    @app.get("/api/v1/account/can-i/{resource}/{action}/{subresource:path}")
    def can_i(request: Request, resource: str, action: str, subresource: str) -> Any:
        route = "/api/v1/account/can-i/{resource}/{action}/{subresource}"
        check_query(request, route)
        return answer(request, route, service.can_i(request.state.account, resource, action, subresource))

    # ---- applications -----------------------------------------------------------------------

    @app.get("/api/v1/applications")
    def list_applications(request: Request) -> Any:
        route = "/api/v1/applications"
        check_query(request, route)
        items = service.list(request.state.account)
        return answer(request, route, {"metadata": {"resourceVersion": str(len(items))}, "items": items})

    @app.post("/api/v1/applications")
    async def create_application(request: Request) -> Any:
        route = "/api/v1/applications"
        body = await body_of(request, route)
        query = request.query_params
        created = service.create(
            request.state.account,
            body,
            upsert=bool(_bool(query.get("upsert"))),
            validate=_bool(query.get("validate")) is not False,
        )
        return answer(request, route, created)

    @app.get("/api/v1/applications/{name}")
    def get_application(request: Request, name: str) -> Any:
        route = "/api/v1/applications/{name}"
        check_query(request, route)
        query = request.query_params
        projects = query.getlist("projects") + query.getlist("project")
        if len(projects) > 1:
            raise ArgoError(
                "InvalidArgument", "multiple projects specified - the get endpoint accepts either zero or one project"
            )
        got = service.get(
            request.state.account, name, project=projects[0] if projects else "", refresh=query.get("refresh")
        )
        return answer(request, route, got)

    @app.put("/api/v1/applications/{name}")
    async def update_application(request: Request, name: str) -> Any:
        route = "/api/v1/applications/{application.metadata.name}"
        body = await body_of(request, route)
        query = request.query_params
        if ((body or {}).get("metadata") or {}).get("name") not in (None, name):
            raise ArgoError("InvalidArgument", "application name in the path and the body differ")
        updated = service.update(
            request.state.account,
            name,
            body,
            validate=_bool(query.get("validate")) is not False,
            project=query.get("project", ""),
        )
        return answer(request, route, updated)

    @app.delete("/api/v1/applications/{name}")
    def delete_application(request: Request, name: str) -> Any:
        route = "/api/v1/applications/{name}"
        check_query(request, route)
        query = request.query_params
        deleted = service.delete(
            request.state.account,
            name,
            cascade=_bool(query.get("cascade")),
            propagation_policy=query.get("propagationPolicy", ""),
            project=query.get("project", ""),
        )
        return answer(request, route, deleted)

    @app.post("/api/v1/applications/{name}/sync")
    async def sync_application(request: Request, name: str) -> Any:
        route = "/api/v1/applications/{name}/sync"
        body = await body_of(request, route)
        return answer(request, route, service.sync(request.state.account, name, body or {}))

    @app.post("/api/v1/applications/{name}/rollback")
    async def rollback_application(request: Request, name: str) -> Any:
        route = "/api/v1/applications/{name}/rollback"
        body = await body_of(request, route)
        return answer(request, route, service.rollback(request.state.account, name, body or {}))

    @app.get("/api/v1/applications/{name}/resource-tree")
    def resource_tree(request: Request, name: str) -> Any:
        route = "/api/v1/applications/{applicationName}/resource-tree"
        check_query(request, route)
        tree = service.resource_tree(request.state.account, name, project=request.query_params.get("project", ""))
        return answer(request, route, tree)

    @app.get("/api/v1/applications/{name}/managed-resources")
    def managed_resources(request: Request, name: str) -> Any:
        route = "/api/v1/applications/{applicationName}/managed-resources"
        check_query(request, route)
        items = service.managed_resources(request.state.account, name, project=request.query_params.get("project", ""))
        return answer(request, route, items)

    # ---- test controls ----------------------------------------------------------------------

    @app.post("/_sim/argocd/faults")
    async def set_faults(request: Request) -> Any:
        try:
            argocd.set_faults(**json.loads(await request.body() or b"{}"))
        except (ValueError, TypeError) as exc:
            return JSONResponse(status_code=400, content={"message": str(exc)})
        return asdict(argocd.faults)

    @app.delete("/_sim/argocd/faults")
    def clear_faults() -> Any:
        argocd.clear_faults()
        return asdict(argocd.faults)

    @app.get("/_sim/argocd/violations")
    def violations() -> Any:
        return [asdict(v) for v in checker.violations]

    return app
