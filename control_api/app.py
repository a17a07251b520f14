"""The FastAPI application factory."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Histogram

from control_api import __version__
from control_api.api.errors import install_error_handlers
from control_api.api.routes import (
    deploy,
    deployments,
    endpoints,
    events,
    lifecycle,
    models,
    removed,
    status,
    system,
)
from control_api.api.security import declare_security, install_security
from control_api.pipeline.admission import Admission
from control_api.pipeline.factory import build_pipelines
from control_api.pipeline.orchestrator import Orchestrator
from control_api.services import Services
from control_api.settings import Settings
from control_api.stack.validation import validate_stack

log = logging.getLogger(__name__)
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def create_app(settings: Settings | None = None, *, resume: bool = True) -> FastAPI:
    settings = settings or Settings()
    # Contradictory settings stop here, before anything is built (StackMisconfigured names them).
    validate_stack(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services(settings)
        orchestrator = Orchestrator(services.journal, settings, build_pipelines(services))
        app.state.services = services
        app.state.orchestrator = orchestrator
        app.state.admission = Admission(
            services.journal, orchestrator, settings.api, settings.target.kind, lambda: services.gitops
        )
        if resume:
            resumed = orchestrator.resume_unfinished()
            if resumed:
                log.info("resumed %d unfinished deployment(s)", len(resumed))
        try:
            yield
        finally:
            orchestrator.shutdown(wait=False)
            services.close()

    app = FastAPI(
        title="MLOps GitOps deploy service",
        version=__version__,
        description="One call from a training script to a served model; every cluster change is a git commit.",
        lifespan=lifespan,
    )
    registry = CollectorRegistry()
    app.state.metrics_registry = registry
    requests_total = Counter(
        "mlops_control_requests_total", "HTTP requests", ["method", "route", "status"], registry=registry
    )
    latency = Histogram("mlops_control_request_seconds", "HTTP request latency", ["method", "route"], registry=registry)

    # The middleware added last runs first: security goes in before request_context so that
    # its refusals already carry a request id.
    install_security(app, settings)

    @app.middleware("http")
    async def request_context(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        incoming = request.headers.get("x-request-id", "")
        request.state.request_id = incoming if REQUEST_ID.match(incoming) else uuid.uuid4().hex
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        route_path = getattr(route, "path", "unmatched")
        requests_total.labels(request.method, route_path, str(response.status_code)).inc()
        latency.labels(request.method, route_path).observe(time.perf_counter() - started)
        response.headers["X-Request-ID"] = request.state.request_id
        return response

    install_error_handlers(app)
    for module in (system, deploy, deployments, events, lifecycle, endpoints, models, status, removed):
        app.include_router(module.router)
    declare_security(app)
    return app
