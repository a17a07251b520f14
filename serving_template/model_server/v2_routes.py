"""The Open Inference Protocol (V2) routes of a served model, on the app ``model_server.app`` builds.

The protocol's logic (request parsing, tensors, responses) is in ``model_server.v2``; this module
binds it to the model's state, the request counters and FastAPI's routes.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import Response
from model_server import v2
from model_server.codec import json_response
from model_server.model import ModelInfo
from model_server.v2 import V2Error
from prometheus_client import Counter

if TYPE_CHECKING:
    from model_server.app import State

V2InferHandler = Callable[[bytes, dict[str, str], str, "str | None"], Awaitable[Response]]


def add_v2_routes(
    app: FastAPI,
    info: ModelInfo,
    state: State,
    count_request: Callable[[str, int, float], None],
    predictions_total: Counter,
    errors_total: Counter,
    max_batch_rows: int,
) -> V2InferHandler:
    """Add /v2 health, metadata, readiness and inference; return the inference handler on raw bodies,
    which the app's ASGI wrapper calls directly on the hot path."""
    v2_outputs = [spec["name"] for spec in v2.output_metadata(info)]

    def v2_error(status: int, message: str) -> Response:
        return json_response(status, {"error": message})

    @app.get("/v2/health/live", summary="V2 server live", tags=["v2"])
    async def v2_live():
        return json_response(200, {"live": True})

    @app.get("/v2/health/ready", summary="V2 server ready: 503 until the model is loaded", tags=["v2"])
    async def v2_ready():
        ready = state.model is not None
        return json_response(200 if ready else 503, {"live": True, "ready": ready})

    @app.get("/v2", summary="V2 server metadata", tags=["v2"])
    async def v2_server_metadata():
        return json_response(200, v2.server_metadata())

    async def v2_model_metadata(name: str, version: str | None = None) -> Response:
        try:
            v2.check_model(info, name, version)
        except V2Error as exc:
            return v2_error(exc.status, exc.message)
        return json_response(200, v2.model_metadata(info, state.model))

    async def v2_model_ready(name: str, version: str | None = None) -> Response:
        try:
            v2.check_model(info, name, version)
        except V2Error as exc:
            return v2_error(exc.status, exc.message)
        ready = state.model is not None
        return json_response(200 if ready else 503, {"name": info.name, "ready": ready})

    async def v2_infer_raw(raw: bytes, headers: dict[str, str], name: str, version: str | None) -> Response:
        started = time.perf_counter()
        try:
            v2.check_model(info, name, version)
            model = state.model
            if model is None:
                raise V2Error(503, state.load_error or "the model is still loading")
            parsed = v2.parse_infer_request(raw, headers.get(v2.HEADER_LENGTH))
            results = await v2.infer(parsed, info, model, state.predict_matrix, max_batch_rows, v2_outputs)
            body, header_length = v2.encode_response(parsed, info, results)
            predictions_total.inc(len(next(iter(results.values()))) if results else 0)
            if header_length is None:
                response = Response(body, status_code=200, media_type="application/json")
            else:
                response = Response(
                    body,
                    status_code=200,
                    media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(header_length)},
                )
        except V2Error as exc:
            errors_total.labels("v2_" + str(exc.status)).inc()
            response = v2_error(exc.status, exc.message)
        except Exception as exc:  # a model bug: still the protocol's error format, and counted
            errors_total.labels("prediction_failed").inc()
            response = v2_error(500, f"{type(exc).__name__}: {str(exc)[:300]}")
        count_request("/v2/infer", response.status_code, time.perf_counter() - started)
        return response

    async def v2_infer(request: Request, name: str, version: str | None = None) -> Response:
        return await v2_infer_raw(await request.body(), dict(request.headers), name, version)

    # Each model route also answers under /versions/{version}, as the protocol allows.
    for suffix, handler, method, summary in (
        ("", v2_model_metadata, "GET", "V2 model metadata"),
        ("/ready", v2_model_ready, "GET", "V2 model ready"),
        ("/infer", v2_infer, "POST", "V2 inference"),
    ):
        app.add_api_route(f"/v2/models/{{name}}{suffix}", handler, methods=[method], summary=summary, tags=["v2"])
        app.add_api_route(
            f"/v2/models/{{name}}/versions/{{version}}{suffix}",
            handler,
            methods=[method],
            summary=f"{summary} (one version)",
            tags=["v2"],
        )

    return v2_infer_raw
