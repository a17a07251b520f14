"""HTTP surface of a served model: /predict, /predict/batch, /invocations, /health, /ready, /metadata, /metrics,
and the Open Inference Protocol (V2) under /v2 (model_server.v2).

The request path is kept lean on purpose (raw JSON in, pre-serialised JSON out, a pure ASGI wrapper for
the request id): per-request overhead is what decides p50 latency for small models.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import metadata as distribution_metadata
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from model_server import __version__
from model_server.batching import BatchObserver, BatchSettings, MicroBatcher
from model_server.codec import json_response, loads
from model_server.inputs import InputError, extract_rows, to_matrix
from model_server.model import LoadedModel, ModelInfo, example_rows, read_model_info
from model_server.v2_routes import add_v2_routes
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

MAX_ROWS = int(os.environ.get("MAX_ROWS", "1000"))
MAX_BATCH_ROWS = int(os.environ.get("MAX_BATCH_ROWS", "100000"))


class State:
    def __init__(self, model_dir: Path, info: ModelInfo) -> None:
        self.model_dir = model_dir
        self.info = info
        self.model: LoadedModel | None = None
        self.loaded_at: str | None = None
        self.load_error: str | None = None
        self.batcher: MicroBatcher | None = None

    async def predict_matrix(self, matrix: Any) -> Any:
        """The fast path's predictions, through the micro-batcher once the model is loaded."""
        if self.batcher is not None:
            return await self.batcher.predict(matrix)
        assert self.model is not None
        return self.model.predict_matrix(matrix)


class PrometheusBatchObserver(BatchObserver):
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rows = Histogram(
            "model_batch_rows",
            "Rows per batched predict call",
            registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.requests = Histogram(
            "model_batch_requests",
            "Requests per batched predict call",
            registry=registry,
            buckets=(1, 2, 4, 8, 16, 32, 64),
        )
        self.wait = Histogram(
            "model_batch_queue_wait_seconds",
            "Time a request waited in a batch before the predict call",
            registry=registry,
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01),
        )

    def batch(self, rows: int, requests: int) -> None:
        self.rows.observe(rows)
        self.requests.observe(requests)

    def queue_wait(self, seconds: float) -> None:
        self.wait.observe(seconds)


def _error(status: int, code: str, message: str, details: Any, request_id: str) -> Response:
    return json_response(
        status, {"error": {"code": code, "message": message, "details": details, "request_id": request_id}}
    )


def _request_id(request: Request) -> str:
    return request.scope.get("mlops.request_id", "")


def _example_body(info: ModelInfo) -> dict:
    if isinstance(info.input_example, dict):
        return info.input_example
    names = [c.name for c in info.inputs if c.name]
    if names:
        return {"dataframe_split": {"columns": names, "data": [[0.0] * len(names)]}}
    return {"inputs": [[0.0]]}


def installed_packages() -> dict[str, str]:
    """Every distribution this server's Python can import, by normalised name: the versions the model
    runs with (the build installs the training environment's)."""
    found: dict[str, str] = {}
    for distribution in distribution_metadata.distributions():
        name = distribution.metadata["Name"]
        if name:
            found.setdefault(re.sub(r"[-_.]+", "-", name).lower(), distribution.version)  # PEP 503
    return dict(sorted(found.items()))


def create_app(model_dir: Path | None = None, *, load_in_background: bool = True) -> RequestIdMiddleware:
    model_dir = Path(model_dir or os.environ.get("MODEL_DIR", "/opt/model"))
    info = read_model_info(model_dir)
    state = State(model_dir, info)
    ready_file = os.environ.get("READY_FILE")

    registry = CollectorRegistry()
    requests_total = Counter(
        "model_requests_total", "Requests by endpoint and status", ["endpoint", "status"], registry=registry
    )
    latency = Histogram(
        "model_request_seconds",
        "Request latency by endpoint",
        ["endpoint"],
        registry=registry,
        buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    )
    predictions_total = Counter("model_predictions_total", "Rows predicted", registry=registry)
    labelled: dict[tuple[str, str], Any] = {}

    def count_request(endpoint: str, status: int, seconds: float) -> None:
        """Counter and histogram children looked up once per (endpoint, status): labels() takes a lock."""
        key = (endpoint, str(status))
        if key not in labelled:
            labelled[key] = (requests_total.labels(*key), latency.labels(endpoint))
        counter, histogram = labelled[key]
        counter.inc()
        histogram.observe(seconds)

    errors_total = Counter("model_errors_total", "Errors by code", ["code"], registry=registry)
    batch_settings = BatchSettings.from_env()
    batch_observer = PrometheusBatchObserver(registry)

    def load() -> None:
        try:
            model = LoadedModel(model_dir, info)
            if model.fast_path:
                batcher = MicroBatcher(model.predict_matrix, batch_settings, batch_observer)
                sample = example_rows(info)
                if sample or info.inputs:
                    import numpy as np

                    batcher.calibrate(np.asarray((sample or [[0.0] * len(info.inputs)])[0], dtype=np.float64))
                state.batcher = batcher
            state.model = model
            state.loaded_at = datetime.now(UTC).isoformat()
            if ready_file:
                Path(ready_file).write_text(state.loaded_at)
        except Exception as exc:  # reported by /ready and /metadata; the process stays up for debugging
            state.load_error = f"{type(exc).__name__}: {exc}"

    app = FastAPI(
        title=f"{info.name} v{info.version}",
        version=__version__,
        description=f"Model server for {info.name} version {info.version} (run {info.run_id}).",
    )
    app.state.model_state = state
    if load_in_background:
        threading.Thread(target=load, daemon=True).start()
    else:
        load()

    example = _example_body(info)
    packages = installed_packages()
    predict_doc = {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}, "example": example}},
            "description": "Rows to score. Columns: " + ", ".join(f"{c.name} ({c.type})" for c in info.inputs if c.name)
            if info.inputs
            else "Rows to score.",
        }
    }

    async def score(body: Any, request_id: str, max_rows: int, mlflow_protocol: bool = False) -> Response:
        model = state.model
        if model is None:
            return _error(503, "model_not_loaded", state.load_error or "the model is still loading", None, request_id)
        rows, _ = extract_rows(body, info.inputs, max_rows)
        parameters = body.get("parameters") or body.get("params") or {}
        if model.fast_path:
            matrix = to_matrix(rows, info.inputs)
            try:
                predictions = await state.predict_matrix(matrix)
            except ValueError as exc:  # e.g. a feature count the estimator refuses
                raise InputError("invalid_input", f"the model refused the input: {exc}") from exc
            result: dict[str, Any] = {"predictions": predictions.tolist()}
            if parameters.get("return_probability"):
                if not model.can_predict_proba:
                    raise InputError("not_a_classifier", "return_probability needs a classifier with predict_proba")
                result["probabilities"] = model.predict_proba_matrix(matrix).tolist()
                result["classes"] = model.classes.tolist() if model.classes is not None else None
        else:
            import pandas as pd

            if parameters.get("return_probability"):
                raise InputError(
                    "not_a_classifier", "return_probability needs a scikit-learn classifier with predict_proba"
                )
            names = [c.name for c in info.inputs if c.name] or None
            frame = pd.DataFrame(rows, columns=names)
            try:
                predictions = model.predict_frame(frame, body.get("params"))
            except Exception as exc:  # pyfunc enforces the schema and raises MlflowException
                raise InputError("invalid_input", f"the model refused the input: {str(exc)[:500]}") from exc
            if hasattr(predictions, "to_dict") and hasattr(predictions, "columns"):
                predictions = predictions.to_dict(orient="records")
            elif hasattr(predictions, "tolist"):
                predictions = predictions.tolist()
            result = {"predictions": predictions}
        predictions_total.inc(len(rows))
        if not mlflow_protocol:
            result["model_name"] = info.name
            result["model_version"] = info.version
        return json_response(200, result)

    async def handle(
        raw: bytes, content_type: str, request_id: str, endpoint: str, max_rows: int, mlflow_protocol: bool = False
    ) -> Response:
        started = time.perf_counter()
        try:
            if mlflow_protocol and content_type.startswith("text/csv"):
                body = _csv_body(raw)
            else:
                try:
                    body = loads(raw)
                except ValueError:
                    raise InputError("invalid_json", "the body is not valid JSON") from None
            response = await score(body, request_id, max_rows, mlflow_protocol)
        except InputError as exc:
            errors_total.labels(exc.code).inc()
            response = _error(
                422 if exc.code != "invalid_json" else 400, exc.code, exc.message, exc.details, request_id
            )
        except Exception as exc:  # a model bug: still the error format, and counted
            errors_total.labels("prediction_failed").inc()
            response = _error(500, "prediction_failed", f"{type(exc).__name__}: {str(exc)[:300]}", None, request_id)
        count_request(endpoint, response.status_code, time.perf_counter() - started)
        return response

    async def predict_raw(raw: bytes, headers: dict[str, str], request_id: str) -> Response:
        return await handle(raw, headers.get("content-type", ""), request_id, "/predict", MAX_ROWS)

    async def predict_batch_raw(raw: bytes, headers: dict[str, str], request_id: str) -> Response:
        return await handle(raw, headers.get("content-type", ""), request_id, "/predict/batch", MAX_BATCH_ROWS)

    async def invocations_raw(raw: bytes, headers: dict[str, str], request_id: str) -> Response:
        content_type = headers.get("content-type", "")
        return await handle(raw, content_type, request_id, "/invocations", MAX_BATCH_ROWS, mlflow_protocol=True)

    # The scoring routes are served by RequestIdMiddleware's direct dispatch (below), which skips the
    # framework's routing; these declarations give them their OpenAPI documentation and serve as the
    # same handlers when the app is mounted without the middleware.
    @app.post("/predict", openapi_extra=predict_doc, summary="Predict for a few rows")
    async def predict(request: Request):
        return await predict_raw(await request.body(), dict(request.headers), _request_id(request))

    @app.post("/predict/batch", openapi_extra=predict_doc, summary="Predict for many rows (same shapes, larger limit)")
    async def predict_batch(request: Request):
        return await predict_batch_raw(await request.body(), dict(request.headers), _request_id(request))

    @app.post("/invocations", openapi_extra=predict_doc, summary="MLflow scoring protocol")
    async def invocations(request: Request):
        return await invocations_raw(await request.body(), dict(request.headers), _request_id(request))

    @app.get("/health", summary="Liveness")
    async def health():
        return json_response(
            200, {"status": "healthy", "model": {"name": info.name, "version": info.version, "run_id": info.run_id}}
        )

    @app.get("/ready", summary="Readiness: 503 until the model is loaded")
    async def ready(request: Request):
        if state.model is None:
            return _error(
                503, "model_not_loaded", state.load_error or "the model is still loading", None, _request_id(request)
            )
        return json_response(200, {"status": "ready", "loaded_at": state.loaded_at})

    @app.get("/metadata", summary="What is served")
    async def metadata():
        return json_response(
            200,
            {
                "model_name": info.name,
                "model_version": info.version,
                "run_id": info.run_id,
                "model_uri": info.model_uri,
                "mlflow_uri": info.mlflow_uri,
                "model_loaded": state.model is not None,
                "load_error": state.load_error,
                "loaded_at": state.loaded_at,
                "flavor": "sklearn" if state.model is not None and state.model.fast_path else "python_function",
                "signature": {"inputs": info.input_schema, "outputs": info.output_schema},
                "input_example": example,
                "server_version": __version__,
                "packages": packages,
            },
        )

    v2_infer_raw = add_v2_routes(
        app, info, state, count_request, predictions_total, errors_total, max_batch_rows=MAX_BATCH_ROWS
    )

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(404)
    async def not_found(request: Request, exc):
        if request.url.path == "/v2" or request.url.path.startswith("/v2/"):
            return json_response(404, {"error": f"no route {request.url.path}"})
        return _error(404, "not_found", f"no route {request.url.path}", None, _request_id(request))

    @app.exception_handler(405)
    async def not_allowed(request: Request, exc):
        if request.url.path == "/v2" or request.url.path.startswith("/v2/"):
            return json_response(405, {"error": f"{request.method} is not allowed on {request.url.path}"})
        return _error(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}",
            None,
            _request_id(request),
        )

    direct_posts: dict[str, DirectHandler] = {
        "/predict": predict_raw,
        "/predict/batch": predict_batch_raw,
        "/invocations": invocations_raw,
    }
    return RequestIdMiddleware(app, direct_posts, v2_infer_raw)


def _csv_body(raw: bytes) -> dict:
    import csv
    import io

    reader = csv.reader(io.StringIO(raw.decode("utf-8")))
    header = next(reader, None)
    if not header:
        raise InputError("invalid_body", "empty CSV")
    rows = []
    for row in reader:
        try:
            rows.append([float(v) for v in row])
        except ValueError:
            raise InputError("invalid_type", "CSV values must be numbers") from None
    return {"dataframe_split": {"columns": header, "data": rows}}


DirectHandler = Callable[[bytes, dict[str, str], str], Awaitable[Response]]
V2InferHandler = Callable[[bytes, dict[str, str], str, str | None], Awaitable[Response]]


def v2_infer_target(path: str) -> tuple[str, str | None] | None:
    """(model name, version or None) of a ``/v2/models/<name>[/versions/<v>]/infer`` path."""
    parts = path.split("/")
    if len(parts) == 5 and parts[1:3] == ["v2", "models"] and parts[4] == "infer" and parts[3]:
        return parts[3], None
    if len(parts) == 7 and parts[1:3] == ["v2", "models"] and parts[4] == "versions" and parts[6] == "infer":
        return (parts[3], parts[5]) if parts[3] and parts[5] else None
    return None


class RequestIdMiddleware:
    """Pure ASGI: adds X-Request-ID to every response at a fraction of BaseHTTPMiddleware's cost, and
    dispatches the scoring POSTs straight to their handlers: routing, dependency solving and the
    framework's request object cost about as much as scoring a small model, and p50 latency is
    decided by per-request overhead."""

    def __init__(
        self,
        app: FastAPI,
        direct_posts: dict[str, DirectHandler] | None = None,
        v2_infer: V2InferHandler | None = None,
    ) -> None:
        self.app = app
        self.state = app.state
        self.direct_posts = direct_posts or {}
        self.v2_infer = v2_infer

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        request_id = (
            incoming.decode("latin-1")[:128] if incoming and incoming.replace(b"-", b"").isalnum() else uuid.uuid4().hex
        )
        scope["mlops.request_id"] = request_id
        header = (b"x-request-id", request_id.encode())

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        if scope["method"] == "POST":
            path = scope["path"]
            handler = self.direct_posts.get(path)
            target = v2_infer_target(path) if handler is None and self.v2_infer is not None else None
            if handler is not None or target is not None:
                raw = await _read_body(receive)
                if raw is None:  # the client went away before sending its body
                    return
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
                if handler is not None:
                    response = await handler(raw, headers, request_id)
                else:
                    assert self.v2_infer is not None and target is not None
                    response = await self.v2_infer(raw, headers, *target)
                await response(scope, receive, send_with_id)
                return
        await self.app(scope, receive, send_with_id)


async def _read_body(receive) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
