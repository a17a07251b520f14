"""The tracking door: the only way a training script reaches MLflow.

The script never opens the MLflow store (its database, its artifact folders, a tracking server's
credentials). It gets ``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>`` and a bearer token
(``MLFLOW_TRACKING_TOKEN``) instead, and talks to this small MLflow-compatible REST endpoint, which
the service runs for the length of one training and which acts with the service's own client:

* every request must carry the run's token (it is random and dies when the training ends);
* only operations on the handed-over run are accepted: read and update the run, log params, metrics,
  tags, inputs and outputs, create logged models whose source is that run and finish them, and read or
  write artifacts under the run's or those models' artifact folders (``mlflow-artifacts:/runs/<run_id>``
  and ``mlflow-artifacts:/models/<model_id>``, MLflow's proxied artifact API). Everything else answers
  403 ``PERMISSION_DENIED``;
* tags under ``mlops.`` belong to the service (who requested the deploy, its id); a script may not set them;
* artifact paths are relative paths of plain names: no ``..``, no absolute path, no empty part. Where
  an artifact lands is decided from the store, which only the service writes.

The service serves the door on a Unix socket that only the sandbox sees (the sandbox's init forwards
127.0.0.1:<port> inside the sandbox to it), or, without a sandbox, on a loopback port.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import re
import secrets
import shutil
import socketserver
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

if TYPE_CHECKING:  # MLflow is imported when a request needs it, not with this module
    from email.message import Message
    from io import BufferedIOBase

    from mlflow.entities import LoggedModel
    from mlflow.protos.service_pb2 import Run as RunProto
    from mlflow.store.artifact.artifact_repo import ArtifactRepository

    from control_api.adapters.mlflow_store.gateway import MlflowGateway

log = logging.getLogger(__name__)
API = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
SERVICE_TAG_PREFIX = "mlops."
SCRIPT_TAGS = frozenset({"mlops.script_experiment"})  # set by the training hook on the script's behalf
PLAIN_PART = re.compile(r"^[^/\\\x00]+$")
CHUNK = 1 << 16
# The query string's parameters, each with its last value.
Query = dict[str, str]
ProtoMessage = TypeVar("ProtoMessage")


class DoorError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _denied(message: str) -> DoorError:
    return DoorError(403, "PERMISSION_DENIED", message)


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "application/json"
    file: Path | None = None


def _json(payload: dict[str, Any], status: int = 200) -> Reply:
    return Reply(status, json.dumps(payload).encode())


def _proto_json(message: Any) -> dict[str, Any]:
    from mlflow.utils.proto_json_utils import message_to_json

    return json.loads(message_to_json(message))


def _parse(proto_class: type[ProtoMessage], payload: dict[str, Any]) -> ProtoMessage:
    from mlflow.utils.proto_json_utils import parse_dict

    message = proto_class()
    parse_dict(payload, message)
    return message


def safe_relative(path: str) -> str:
    """A relative artifact path of plain names, or a 400; never ``..``, ``.``, an absolute path or ``//``."""
    if path in ("", "/"):
        return ""
    parts = path.strip("/").split("/")
    for part in parts:
        if part in ("", ".", "..") or not PLAIN_PART.match(part):
            raise DoorError(
                400, "INVALID_PARAMETER_VALUE", f"artifact path {path!r} must be a relative path of plain names"
            )
    return "/".join(parts)


class TrackingDoor:
    """Answers one run's MLflow REST calls with the service's own store (the handler of the server below)."""

    def __init__(
        self,
        gateway: MlflowGateway,
        run_id: str,
        experiment_id: str,
        *,
        max_artifact_bytes: int,
        token: str | None = None,
    ) -> None:
        self.gateway = gateway
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.token = token or secrets.token_urlsafe(32)
        self.max_artifact_bytes = max_artifact_bytes
        self.store = gateway.client._tracking_client.store
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Reply]]] = [
            ("GET", re.compile(rf"^{API}/runs/get$"), self.get_run),
            ("POST", re.compile(rf"^{API}/runs/update$"), self.update_run),
            ("POST", re.compile(rf"^{API}/runs/log-metric$"), self.log_metric),
            ("POST", re.compile(rf"^{API}/runs/log-parameter$"), self.log_param),
            ("POST", re.compile(rf"^{API}/runs/set-tag$"), self.set_tag),
            ("POST", re.compile(rf"^{API}/runs/delete-tag$"), self.delete_tag),
            ("POST", re.compile(rf"^{API}/runs/log-batch$"), self.log_batch),
            ("POST", re.compile(rf"^{API}/runs/log-model$"), self.log_model),
            ("POST", re.compile(rf"^{API}/runs/log-inputs$"), self.log_inputs),
            ("POST", re.compile(rf"^{API}/runs/outputs$"), self.log_outputs),
            ("GET", re.compile(rf"^{API}/metrics/get-history$"), self.metric_history),
            ("GET", re.compile(rf"^{API}/experiments/get$"), self.get_experiment),
            ("GET", re.compile(rf"^{API}/experiments/get-by-name$"), self.get_experiment_by_name),
            ("POST", re.compile(rf"^{API}/logged-models$"), self.create_logged_model),
            ("POST", re.compile(rf"^{API}/logged-models/search$"), self.search_logged_models),
            ("GET", re.compile(rf"^{API}/logged-models/(?P<model_id>[^/]+)$"), self.get_logged_model),
            ("PATCH", re.compile(rf"^{API}/logged-models/(?P<model_id>[^/]+)$"), self.finalize_logged_model),
            ("PATCH", re.compile(rf"^{API}/logged-models/(?P<model_id>[^/]+)/tags$"), self.set_logged_model_tags),
            ("POST", re.compile(rf"^{API}/logged-models/(?P<model_id>[^/]+)/params$"), self.log_logged_model_params),
            ("PUT", re.compile(rf"^{ARTIFACTS}/(?P<path>.+)$"), self.upload_artifact),
            ("GET", re.compile(rf"^{ARTIFACTS}/(?P<path>.+)$"), self.download_artifact),
            ("GET", re.compile(rf"^{ARTIFACTS}$"), self.list_artifacts),
        ]

    # ---- dispatch --------------------------------------------------------------------------------

    def authorized(self, header: str | None) -> bool:
        scheme, _, value = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def handle(self, method: str, target: str, authorization: str | None, body: BodyReader) -> Reply:
        if not self.authorized(authorization):
            return _json(
                {"error_code": "UNAUTHENTICATED", "message": "this endpoint needs the training run's token"}, 401
            )
        split = urlsplit(target)
        path = unquote(split.path)
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        try:
            for route_method, pattern, handler in self.routes:
                match = pattern.match(path)
                if match and route_method == method:
                    return handler(query=query, body=body, **match.groupdict())
            raise _denied(
                f"{method} {path} is not open to a training script: it may only log to its own run {self.run_id}"
            )
        except DoorError as exc:
            return _json({"error_code": exc.code, "message": exc.message}, exc.status)
        except Exception as exc:  # the store's own refusals (bad value, missing entity) go back to the client
            from mlflow.exceptions import MlflowException

            if isinstance(exc, MlflowException):
                return _json({"error_code": exc.error_code, "message": exc.message}, exc.get_http_status_code())
            if isinstance(exc, (KeyError, ValueError, TypeError)):
                return _json(
                    {"error_code": "INVALID_PARAMETER_VALUE", "message": f"bad request: {type(exc).__name__}: {exc}"},
                    400,
                )
            log.exception("tracking door: %s %s failed", method, path)
            return _json(
                {"error_code": "INTERNAL_ERROR", "message": f"the tracking door failed: {type(exc).__name__}"}, 500
            )

    # ---- ownership -----------------------------------------------------------------------------

    def _own_run(self, payload: dict[str, Any]) -> str:
        run_id = payload.get("run_id") or payload.get("run_uuid")
        if run_id != self.run_id:
            raise _denied(f"run {run_id!r} is not this training's run ({self.run_id})")
        return run_id

    def _own_model(self, model_id: str) -> LoggedModel:
        model = self.store.get_logged_model(model_id)
        if model.source_run_id != self.run_id or str(model.experiment_id) != self.experiment_id:
            raise _denied(f"logged model {model_id!r} was not created by this training's run")
        return model

    @staticmethod
    def _script_tag(key: str) -> None:
        if key.startswith(SERVICE_TAG_PREFIX) and key not in SCRIPT_TAGS:
            raise _denied(f"tag {key!r}: tags under {SERVICE_TAG_PREFIX!r} are set by the deploy service only")

    # ---- runs ----------------------------------------------------------------------------------

    def _run_proto(self) -> RunProto:
        run = self.store.get_run(self.run_id)
        proto = run.to_proto()
        proto.info.artifact_uri = f"mlflow-artifacts:/runs/{self.run_id}"
        return proto

    def get_run(self, query: Query, body: BodyReader) -> Reply:
        self._own_run(query)
        return _json({"run": _proto_json(self._run_proto())})

    def update_run(self, query: Query, body: BodyReader) -> Reply:
        from mlflow.entities import RunStatus
        from mlflow.protos.service_pb2 import UpdateRun

        payload = body.json()
        self._own_run(payload)
        request = _parse(UpdateRun, payload)
        status = (
            RunStatus.to_string(request.status)
            if request.HasField("status")
            else self.store.get_run(self.run_id).info.status
        )
        info = self.store.update_run_info(
            self.run_id,
            RunStatus.from_string(status),
            request.end_time if request.HasField("end_time") else None,
            request.run_name if request.HasField("run_name") else None,
        )
        proto = info.to_proto()
        proto.artifact_uri = f"mlflow-artifacts:/runs/{self.run_id}"
        return _json({"run_info": _proto_json(proto)})

    def log_metric(self, query: Query, body: BodyReader) -> Reply:
        from mlflow.entities import Metric

        payload = body.json()
        self._own_run(payload)
        metric = Metric(
            payload["key"],
            float(payload["value"]),
            int(payload.get("timestamp") or 0),
            int(payload.get("step") or 0),
            model_id=payload.get("model_id"),
            dataset_name=payload.get("dataset_name"),
            dataset_digest=payload.get("dataset_digest"),
            run_id=self.run_id,
        )
        if metric.model_id:
            self._own_model(metric.model_id)
        self.store.log_metric(self.run_id, metric)
        return _json({})

    def log_param(self, query: Query, body: BodyReader) -> Reply:
        from mlflow.entities import Param

        payload = body.json()
        self._own_run(payload)
        self.store.log_param(self.run_id, Param(payload["key"], str(payload.get("value", ""))))
        return _json({})

    def set_tag(self, query: Query, body: BodyReader) -> Reply:
        from mlflow.entities import RunTag

        payload = body.json()
        self._own_run(payload)
        self._script_tag(payload["key"])
        self.store.set_tag(self.run_id, RunTag(payload["key"], str(payload.get("value", ""))))
        return _json({})

    def delete_tag(self, query: Query, body: BodyReader) -> Reply:
        payload = body.json()
        self._own_run(payload)
        self._script_tag(payload["key"])
        self.store.delete_tag(self.run_id, payload["key"])
        return _json({})

    def log_batch(self, query: Query, body: BodyReader) -> Reply:
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.protos.service_pb2 import LogBatch

        payload = body.json()
        self._own_run(payload)
        request = _parse(LogBatch, payload)
        metrics = [Metric.from_proto(m) for m in request.metrics]
        for metric in metrics:
            if metric.model_id:
                self._own_model(metric.model_id)
        tags = [RunTag.from_proto(t) for t in request.tags]
        for tag in tags:
            self._script_tag(tag.key)
        self.store.log_batch(
            self.run_id, metrics=metrics, params=[Param.from_proto(p) for p in request.params], tags=tags
        )
        return _json({})

    def log_model(self, query: Query, body: BodyReader) -> Reply:
        from mlflow.models import Model

        payload = body.json()
        self._own_run(payload)
        model = Model.from_dict(json.loads(payload["model_json"]))
        self.store.record_logged_model(self.run_id, model)
        return _json({})

    def log_inputs(self, query: Query, body: BodyReader) -> Reply:
        from mlflow.entities import DatasetInput, LoggedModelInput
        from mlflow.protos.service_pb2 import LogInputs

        payload = body.json()
        self._own_run(payload)
        request = _parse(LogInputs, payload)
        models = [LoggedModelInput.from_proto(m) for m in request.models]
        for model in models:
            self._own_model(model.model_id)
        self.store.log_inputs(
            self.run_id, datasets=[DatasetInput.from_proto(d) for d in request.datasets], models=models
        )
        return _json({})

    def log_outputs(self, query: Query, body: BodyReader) -> Reply:
        from mlflow.entities import LoggedModelOutput
        from mlflow.protos.service_pb2 import LogOutputs

        payload = body.json()
        self._own_run(payload)
        models = [LoggedModelOutput.from_proto(m) for m in _parse(LogOutputs, payload).models]
        for model in models:
            self._own_model(model.model_id)
        self.store.log_outputs(self.run_id, models)
        return _json({})

    def metric_history(self, query: Query, body: BodyReader) -> Reply:
        self._own_run(query)
        history = self.store.get_metric_history(self.run_id, query["metric_key"])
        return _json({"metrics": [_proto_json(m.to_proto()) for m in history]})

    # ---- the run's experiment ------------------------------------------------------------------

    def _experiment_reply(self) -> Reply:
        proto = self.store.get_experiment(self.experiment_id).to_proto()
        proto.artifact_location = f"mlflow-artifacts:/experiments/{self.experiment_id}"
        return _json({"experiment": _proto_json(proto)})

    def get_experiment(self, query: Query, body: BodyReader) -> Reply:
        if query.get("experiment_id") != self.experiment_id:
            raise _denied(
                f"experiment {query.get('experiment_id')!r} is not this training's experiment ({self.experiment_id})"
            )
        return self._experiment_reply()

    def get_experiment_by_name(self, query: Query, body: BodyReader) -> Reply:
        if query.get("experiment_name") != self.store.get_experiment(self.experiment_id).name:
            raise _denied("a training script sees only its own experiment")
        return self._experiment_reply()

    # ---- logged models -------------------------------------------------------------------------

    def _model_reply(self, model: LoggedModel) -> Reply:
        proto = model.to_proto()
        proto.info.artifact_uri = f"mlflow-artifacts:/models/{model.model_id}"
        return _json({"model": _proto_json(proto)})

    def create_logged_model(self, query: Query, body: BodyReader) -> Reply:
        from mlflow.entities import LoggedModelParameter, LoggedModelTag
        from mlflow.protos.service_pb2 import CreateLoggedModel

        payload = body.json()
        request = _parse(CreateLoggedModel, payload)
        if request.experiment_id != self.experiment_id:
            raise _denied(f"a training script creates models in its own experiment ({self.experiment_id}) only")
        if request.HasField("source_run_id") and request.source_run_id != self.run_id:
            raise _denied(f"a training script creates models of its own run ({self.run_id}) only")
        tags = [LoggedModelTag.from_proto(t) for t in request.tags]
        for tag in tags:
            self._script_tag(tag.key)
        model = self.store.create_logged_model(
            experiment_id=self.experiment_id,
            name=request.name or None,
            source_run_id=self.run_id,
            tags=tags,
            params=[LoggedModelParameter.from_proto(p) for p in request.params],
            model_type=request.model_type or None,
        )
        return self._model_reply(model)

    def get_logged_model(self, query: Query, body: BodyReader, model_id: str) -> Reply:
        return self._model_reply(self._own_model(model_id))

    def finalize_logged_model(self, query: Query, body: BodyReader, model_id: str) -> Reply:
        from mlflow.entities import LoggedModelStatus
        from mlflow.protos.service_pb2 import FinalizeLoggedModel

        self._own_model(model_id)
        request = _parse(FinalizeLoggedModel, body.json())
        return self._model_reply(self.store.finalize_logged_model(model_id, LoggedModelStatus.from_int(request.status)))

    def set_logged_model_tags(self, query: Query, body: BodyReader, model_id: str) -> Reply:
        from mlflow.entities import LoggedModelTag
        from mlflow.protos.service_pb2 import SetLoggedModelTags

        self._own_model(model_id)
        tags = [LoggedModelTag.from_proto(t) for t in _parse(SetLoggedModelTags, body.json()).tags]
        for tag in tags:
            self._script_tag(tag.key)
        self.store.set_logged_model_tags(model_id, tags)
        return _json({})

    def log_logged_model_params(self, query: Query, body: BodyReader, model_id: str) -> Reply:
        from mlflow.entities import LoggedModelParameter
        from mlflow.protos.service_pb2 import LogLoggedModelParamsRequest

        self._own_model(model_id)
        params = [LoggedModelParameter.from_proto(p) for p in _parse(LogLoggedModelParamsRequest, body.json()).params]
        self.store.log_logged_model_params(model_id, params)
        return _json({})

    def search_logged_models(self, query: Query, body: BodyReader) -> Reply:
        payload = body.json()
        if [str(e) for e in payload.get("experiment_ids") or []] != [self.experiment_id]:
            raise _denied(f"a training script searches its own experiment ({self.experiment_id}) only")
        found = self.store.search_logged_models(experiment_ids=[self.experiment_id], max_results=1000)
        own = [m for m in found if m.source_run_id == self.run_id]
        return _json({"models": [json.loads(self._model_reply(m).body)["model"] for m in own]})

    # ---- artifacts -----------------------------------------------------------------------------

    def _artifact_target(self, path: str) -> tuple[str, str]:
        """(the real artifact URI of the run or logged model, the relative path under it)."""
        relative = safe_relative(path)
        kind, _, rest = relative.partition("/")
        owner, _, inner = rest.partition("/")
        if kind == "runs" and owner == self.run_id:
            return self.store.get_run(self.run_id).info.artifact_uri, inner
        if kind == "models" and owner:
            return self._own_model(owner).artifact_location, inner
        raise _denied(f"artifact path {path!r} is outside this training's run and models")

    def _repository(self, uri: str) -> ArtifactRepository:
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(uri, tracking_uri=self.gateway.tracking_uri)

    def upload_artifact(self, query: Query, body: BodyReader, path: str) -> Reply:
        root, inner = self._artifact_target(path)
        if not inner:
            raise DoorError(400, "INVALID_PARAMETER_VALUE", "an artifact upload names a file")
        folder, _, name = inner.rpartition("/")
        staging = Path(tempfile.mkdtemp(prefix="mlops-door-"))
        try:
            local = staging / name
            body.save(local, self.max_artifact_bytes)
            self._repository(root).log_artifact(str(local), folder or None)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return _json({})

    def download_artifact(self, query: Query, body: BodyReader, path: str) -> Reply:
        root, inner = self._artifact_target(path)
        staging = Path(tempfile.mkdtemp(prefix="mlops-door-"))
        local = Path(self._repository(root).download_artifacts(inner, dst_path=str(staging)))
        if not local.is_file():
            shutil.rmtree(staging, ignore_errors=True)
            raise DoorError(404, "RESOURCE_DOES_NOT_EXIST", f"no artifact file at {path!r}")
        return Reply(200, b"", "application/octet-stream", file=local)

    def list_artifacts(self, query: Query, body: BodyReader) -> Reply:
        path = query.get("path", "")
        root, inner = self._artifact_target(path)
        files = self._repository(root).list_artifacts(inner or None)
        out = []
        for info in files:
            entry: dict[str, Any] = {"path": info.path.rsplit("/", 1)[-1], "is_dir": info.is_dir}
            if info.file_size is not None:
                entry["file_size"] = info.file_size
            out.append(entry)
        return _json({"files": out})


class BodyReader:
    """A request body read in chunks (Content-Length or chunked), never more than asked for."""

    def __init__(self, stream: BufferedIOBase, headers: Message) -> None:
        self.stream = stream
        self.length = int(headers["Content-Length"]) if headers.get("Content-Length") else None
        self.chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()

    def _chunks(self) -> Iterator[bytes]:
        if self.chunked:
            while True:
                size = int(self.stream.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.stream.readline()
                    return
                yield self.stream.read(size)
                self.stream.readline()
        remaining = self.length or 0
        while remaining > 0:
            data = self.stream.read(min(CHUNK, remaining))
            if not data:
                return
            remaining -= len(data)
            yield data

    def json(self, limit: int = 16 * 2**20) -> dict[str, Any]:
        data = bytearray()
        for chunk in self._chunks():
            data += chunk
            if len(data) > limit:
                raise DoorError(413, "INVALID_PARAMETER_VALUE", f"request body over {limit} bytes")
        try:
            payload = json.loads(bytes(data) or b"{}")
        except ValueError as exc:
            raise DoorError(400, "MALFORMED_REQUEST", f"request body is not JSON: {exc}") from exc
        if not isinstance(payload, dict):
            raise DoorError(400, "MALFORMED_REQUEST", "request body must be a JSON object")
        return payload

    def save(self, path: Path, limit: int) -> None:
        written = 0
        with open(path, "wb") as out:
            for chunk in self._chunks():
                written += len(chunk)
                if written > limit:
                    raise DoorError(
                        413, "INVALID_PARAMETER_VALUE", f"artifact over the file size limit ({limit} bytes)"
                    )
                out.write(chunk)


def _handler_for(door: TrackingDoor) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            body = BodyReader(self.rfile, self.headers)
            reply = door.handle(self.command, self.path, self.headers.get("Authorization"), body)
            self.send_response(reply.status)
            if reply.status >= 400:
                # A refused request's body may be unread: it must not be taken for the next request.
                self.send_header("Connection", "close")
                self.close_connection = True
            self.send_header("Content-Type", reply.content_type)
            if reply.file is not None:
                try:
                    self.send_header("Content-Length", str(reply.file.stat().st_size))
                    self.end_headers()
                    with open(reply.file, "rb") as f:
                        shutil.copyfileobj(f, self.wfile, CHUNK)
                finally:
                    shutil.rmtree(reply.file.parent, ignore_errors=True)
                return
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def address_string(self) -> str:
            return "training-script"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the step log records what matters; request lines would only repeat the script's calls

    return Handler


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


class _LoopbackServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass(frozen=True)
class OpenDoor:
    token: str
    socket_path: Path | None  # for the sandbox: its init forwards a loopback port to this socket
    url: str | None  # without a sandbox: a loopback URL the script uses directly


def new_socket_dir() -> Path:
    """A fresh folder for one door's socket, with a short path (a Unix socket's path has at most 107
    bytes): under /run when the service may write there, else the temporary folder. ``mkdtemp``
    creates it new and owner-only, so nothing else can have put a file or a link there."""
    base = "/run" if os.access("/run", os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix="mlops-door-", dir=base))


@contextmanager
def open_door(
    door: TrackingDoor, *, socket_dir: Path | None, owner: tuple[int, int] | None = None
) -> Iterator[OpenDoor]:
    """Serve ``door`` until the block ends; then the server stops and the token means nothing any more.
    With ``socket_dir`` (from ``new_socket_dir``; removed at the end) on a Unix socket, else on a loopback port."""
    handler = _handler_for(door)
    if socket_dir is not None:
        os.chmod(socket_dir, 0o711)  # the sandbox may reach the socket, never add entries beside it
        path = socket_dir / "tracking.sock"
        if path.exists() or path.is_symlink():
            path.unlink()
        server: socketserver.BaseServer = _UnixServer(str(path), handler)
        os.chmod(path, 0o600)
        if owner is not None:
            # Only the sandbox's uid may connect (and the token is still required). The service created
            # the socket a moment ago under a name it chose.
            os.chown(path, owner[0], owner[1])
        opened = OpenDoor(door.token, path, None)
    else:
        server = _LoopbackServer(("127.0.0.1", 0), handler)
        opened = OpenDoor(door.token, None, f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.2}, name=f"tracking-door-{door.run_id[:8]}", daemon=True
    )
    thread.start()
    try:
        yield opened
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)
