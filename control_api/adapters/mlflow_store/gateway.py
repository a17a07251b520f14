"""MLflow tracking and registry behind one small interface.

The service never touches MLflow's global state (``mlflow.set_tracking_uri``): every call goes through
an ``MlflowClient`` bound to the configured URIs, so tests can run services against different stores in
one process. MLflow exceptions are translated here into the project's own error types.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

from control_api.errors import MlopsError, NotFoundError, ServiceUnavailable, TerminalError

if TYPE_CHECKING:
    # Imported for annotations only: importing MLflow takes seconds, so it is imported where it is used.
    from mlflow.entities import Run
    from mlflow.entities.model_registry import ModelVersion

T = TypeVar("T")

# MLflow's REST client retries connection errors for minutes by default; a control service must
# notice an unavailable tracking server quickly and report it, so it bounds retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")


def iso_from_millis(millis: int | None) -> str | None:
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, tz=UTC).isoformat()


@dataclass(frozen=True)
class LoggedModelRef:
    model_id: str
    name: str
    artifact_location: str
    source_run_id: str | None


def experiment_folder(name: str) -> str:
    """The artifact folder of an experiment, a name the service chooses: the name itself when it is a
    plain name (letters, digits, ``._-``, starting with a letter or digit), else a slug of it plus a
    hash of the whole name. Never ``.``, ``..``, empty or a path."""
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
        return name
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")[:64] or "experiment"
    return f"{slug}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def anchor_default_experiment(tracking_uri: str, artifact_root: str) -> None:
    """MLflow creates the ``Default`` experiment (id 0) in ``./mlruns/0``, under whatever folder the
    process runs in. On the embedded store it lives under the artifact root like every other one."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(tracking_uri, artifact_root)  # a new database gets Default under the root
    wanted = f"{artifact_root.rstrip('/')}/0"
    if store.get_experiment("0").artifact_location == wanted:
        return
    with store.ManagedSessionMaker() as session:
        session.query(SqlExperiment).filter(SqlExperiment.experiment_id == 0).update({"artifact_location": wanted})


def _is_mlflow_or_network_error(exc: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    network: tuple[type[Exception], ...]
    try:
        import requests

        network = (requests.RequestException, ConnectionError, TimeoutError)
    except ImportError:  # pragma: no cover
        network = (ConnectionError, TimeoutError)
    return isinstance(exc, (MlflowException, *network))


def _translate(exc: Exception) -> MlopsError:
    from mlflow.exceptions import MlflowException, RestException

    text = str(exc)
    if isinstance(exc, (RestException, MlflowException)):
        code = getattr(exc, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
            return NotFoundError(text.splitlines()[0][:500], code="mlflow_not_found")
        if "Max retries exceeded" in text or "Connection refused" in text or "API request to" in text:
            return ServiceUnavailable(f"MLflow is unreachable: {text.splitlines()[0][:300]}", code="mlflow_unavailable")
        return TerminalError(f"MLflow error: {text.splitlines()[0][:500]}", code="mlflow_error")
    return ServiceUnavailable(f"MLflow is unreachable: {text[:300]}", code="mlflow_unavailable")


class MlflowGateway:
    def __init__(self, tracking_uri: str, registry_uri: str | None = None, artifact_root: str | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri or tracking_uri
        self.artifact_root = artifact_root
        if tracking_uri.startswith("sqlite:///"):
            database = Path(tracking_uri.removeprefix("sqlite:///").split("?", 1)[0])
            database.parent.mkdir(parents=True, exist_ok=True)
            # Created owner-only before SQLite opens it (SQLite gives its journal files the same mode).
            os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
            if artifact_root:
                anchor_default_experiment(tracking_uri, artifact_root)
        self.client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    @property
    def is_embedded(self) -> bool:
        return urlparse(self.tracking_uri).scheme in ("sqlite", "file", "")

    def _call(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except MlopsError:
            raise
        except Exception as exc:  # translated at the boundary; programming errors pass through
            if not _is_mlflow_or_network_error(exc):
                raise
            raise _translate(exc) from exc

    # ---- health --------------------------------------------------------------------------------

    def ping(self) -> None:
        self._call(lambda: self.client.search_experiments(max_results=1))

    # ---- tracking ------------------------------------------------------------------------------

    def ensure_experiment(self, name: str) -> str:
        def go() -> str:
            existing = self.client.get_experiment_by_name(name)
            if existing is not None:
                if existing.lifecycle_stage == "deleted":
                    self.client.restore_experiment(existing.experiment_id)
                return existing.experiment_id
            location = None
            if self.artifact_root:
                location = f"{self.artifact_root.rstrip('/')}/{experiment_folder(name)}"
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except Exception:
                # Lost a race with a concurrent deploy creating the same experiment.
                again = self.client.get_experiment_by_name(name)
                if again is None:
                    raise
                return again.experiment_id

        return self._call(go)

    def experiment_artifact_location(self, experiment_id: str) -> str:
        return self._call(lambda: self.client.get_experiment(experiment_id).artifact_location)

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        return self._call(lambda: self.client.create_run(experiment_id, tags=tags, run_name=run_name).info.run_id)

    def get_run(self, run_id: str) -> Run:
        return self._call(lambda: self.client.get_run(run_id))

    def set_run_status(self, run_id: str, status: str) -> None:
        self._call(lambda: self.client.set_terminated(run_id, status=status))

    def set_run_tag(self, run_id: str, key: str, value: str) -> None:
        self._call(lambda: self.client.set_tag(run_id, key, value))

    def log_artifact(self, run_id: str, local_path: Path, artifact_path: str | None = None) -> None:
        self._call(lambda: self.client.log_artifact(run_id, str(local_path), artifact_path))

    def logged_models_of_run(self, run_id: str, experiment_ids: list[str]) -> list[LoggedModelRef]:
        def go() -> list[LoggedModelRef]:
            run = self.client.get_run(run_id)
            ids = sorted(set(experiment_ids) | {run.info.experiment_id})
            found = self.client.search_logged_models(experiment_ids=ids, filter_string=f"source_run_id = '{run_id}'")
            return [
                LoggedModelRef(m.model_id, m.name, m.artifact_location, m.source_run_id)
                for m in found
                if getattr(m, "status", None) is None or str(getattr(m, "status", "")).upper().endswith("READY")
            ]

        return self._call(go)

    # ---- registry ------------------------------------------------------------------------------

    def find_version_for_run(self, name: str, run_id: str) -> ModelVersion | None:
        def go() -> ModelVersion | None:
            try:
                found = self.client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
            except Exception as exc:  # no such registered model yet
                if "RESOURCE_DOES_NOT_EXIST" in str(exc):
                    return None
                raise
            versions = sorted(found, key=lambda v: int(v.version))
            return versions[0] if versions else None

        return self._call(go)

    def register(
        self, name: str, source: str, run_id: str, tags: dict[str, str], description: str | None = None
    ) -> ModelVersion:
        def go() -> ModelVersion:
            try:
                self.client.create_registered_model(name)
            except Exception as exc:
                if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
                    raise
            kwargs: dict[str, Any] = {"tags": tags, "description": description}
            location = source
            if source.startswith("models:/m-"):
                # Resolving models:/<id> inside MLflow goes through the process-global tracking URI,
                # which this service never sets; hand it the logged model's own location instead.
                model_id = source.removeprefix("models:/")
                location = self.client.get_logged_model(model_id).artifact_location
                kwargs["model_id"] = model_id
            return self.client.create_model_version(name, location, run_id=run_id, **kwargs)

        return self._call(go)

    def delete_version(self, name: str, version: str) -> None:
        self._call(lambda: self.client.delete_model_version(name, version))

    def set_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._call(lambda: self.client.set_model_version_tag(name, version, key, value))

    def list_models(self) -> list[dict[str, Any]]:
        def go() -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = []
            for model in self.client.search_registered_models(max_results=1000):
                latest = max((int(v.version) for v in (model.latest_versions or [])), default=None)
                out.append(
                    {
                        "name": model.name,
                        "description": model.description or "",
                        "creation_timestamp": iso_from_millis(model.creation_timestamp),
                        "last_updated_timestamp": iso_from_millis(model.last_updated_timestamp),
                        "latest_version": str(latest) if latest is not None else None,
                        "tags": dict(model.tags or {}),
                        "aliases": dict(getattr(model, "aliases", {}) or {}),
                    }
                )
            return sorted(out, key=lambda m: m["name"])

        return self._call(go)

    def get_model(self, name: str) -> dict[str, Any]:
        def go() -> dict[str, Any]:
            model = self.client.get_registered_model(name)
            versions = sorted(
                self.client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version), reverse=True
            )
            aliases_by_version: dict[str, list[str]] = {}
            for alias, version in (getattr(model, "aliases", {}) or {}).items():
                aliases_by_version.setdefault(str(version), []).append(alias)
            version_dicts: list[dict[str, Any]] = []
            for v in versions:
                metrics: dict[str, float] = {}
                params: dict[str, str] = {}
                if v.run_id:
                    try:
                        run = self.client.get_run(v.run_id)
                        metrics, params = dict(run.data.metrics), dict(run.data.params)
                    except Exception:
                        pass  # the run may have been deleted; the version still exists
                version_dicts.append(
                    {
                        "version": str(v.version),
                        "run_id": v.run_id,
                        "status": v.status,
                        "current_stage": v.current_stage,
                        "creation_timestamp": iso_from_millis(v.creation_timestamp),
                        "last_updated_timestamp": iso_from_millis(v.last_updated_timestamp),
                        "aliases": sorted(aliases_by_version.get(str(v.version), [])),
                        "description": v.description or "",
                        "source": v.source,
                        "tags": dict(v.tags or {}),
                        "metrics": metrics,
                        "params": params,
                    }
                )
            latest = version_dicts[0]["version"] if version_dicts else None
            return {
                "name": model.name,
                "description": model.description or "",
                "creation_timestamp": iso_from_millis(model.creation_timestamp),
                "last_updated_timestamp": iso_from_millis(model.last_updated_timestamp),
                "latest_version": latest,
                "tags": dict(model.tags or {}),
                "versions": version_dicts,
            }

        try:
            return self._call(go)
        except NotFoundError:
            raise NotFoundError(f"registered model {name!r} not found", code="model_not_found") from None

    def get_version(self, name: str, version: str) -> ModelVersion:
        return self._call(lambda: self.client.get_model_version(name, version))

    def download_version(self, name: str, version: str, dst: Path) -> Path:
        """Download a registered version's model directory (MLmodel, requirements.txt, weights)."""

        def go() -> Path:
            import mlflow.artifacts

            mv = self.client.get_model_version(name, version)
            model_id: str | None = getattr(mv, "model_id", None)
            source = mv.source
            if model_id:
                source = self.client.get_logged_model(model_id).artifact_location
            elif source is None:
                raise TerminalError(f"model {name!r} version {version} has no source", code="mlflow_error")
            elif source.startswith("models:/m-"):
                source = self.client.get_logged_model(source.removeprefix("models:/")).artifact_location
            dst.mkdir(parents=True, exist_ok=True)
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(dst), tracking_uri=self.tracking_uri
            )
            return Path(path)

        return self._call(go)
