"""The journal's database: the engine (SQLite under the data dir, or PostgreSQL by URL) and its schema."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, insert, inspect, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.schema import CreateIndex

from control_api.journal.records import DeploymentStatus, utcnow
from control_api.journal.rows import (
    ONE_ACTIVE_PER_ENDPOINT,
    ONE_ACTIVE_PER_MODEL_INDEX_NAME,
    Base,
    DeploymentRow,
    EventRow,
    active_status_predicate,
)


def open_engine(url: str) -> Engine:
    """An engine on ``url`` with its schema in place (created, or brought up to date)."""
    if url.startswith("sqlite:///"):
        database = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
        database.parent.mkdir(parents=True, exist_ok=True)
        # Owner-only from the first byte (SQLite gives its journal files the database's mode).
        os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        _enable_sqlite_pragmas(engine)
    _create_schema_once(engine)
    return engine


def _enable_sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:  # pragma: no cover - exercised implicitly
        cursor = dbapi_connection.cursor()
        # WAL lets the status API read while a deploy thread writes; busy_timeout avoids spurious
        # "database is locked" errors under concurrent deploys.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


# Any fixed 64-bit number, the same in every replica: it names the lock, nothing else.
SCHEMA_LOCK_KEY = 0x6D6C6F70735F6A6E  # "mlops_jn"


def _create_schema_once(engine: Engine) -> None:
    """Replicas starting together on an empty database would race their CREATE TABLEs (PostgreSQL
    answers the loser with a unique violation in its catalog). A transaction-scoped advisory lock
    makes them take turns; the later ones then find the tables and the index and create nothing."""
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})
        Base.metadata.create_all(connection)
        _add_endpoint_column(connection)
        _add_one_active_per_endpoint_index(connection)


CONCURRENT_OPERATION = "concurrent_operation"


def _add_endpoint_column(connection: Connection) -> None:
    """Give a journal made before endpoints its ``endpoint`` column. Each operation of that time
    changed the model's only endpoint, which is named after the model, so that is what it records."""
    columns = {column["name"] for column in inspect(connection).get_columns(DeploymentRow.__tablename__)}
    if "endpoint" in columns:
        return
    connection.execute(text("ALTER TABLE deployments ADD COLUMN endpoint VARCHAR(63) NOT NULL DEFAULT ''"))
    connection.execute(update(DeploymentRow).values(endpoint=DeploymentRow.model_name))


def _index_names_every_final_status(connection: Connection) -> bool:
    """Whether the existing one-active-per-endpoint index's condition lists every final status."""
    if connection.dialect.name == "postgresql":
        query = text("SELECT indexdef FROM pg_indexes WHERE indexname = :name")
    else:
        query = text("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = :name")
    definition = connection.execute(query, {"name": ONE_ACTIVE_PER_ENDPOINT.name}).scalar() or ""
    return all(f"'{status}'" in definition for status in DeploymentStatus.FINAL)


def _add_one_active_per_endpoint_index(connection: Connection) -> None:
    """Give a journal made before the one-active-operation index that index (a new journal got it
    from create_all). Such a journal can hold several active operations on one endpoint, which the
    index cannot accept: the oldest keeps running, and each later one ends ``failed`` with the
    error ``concurrent_operation`` naming the one kept. Nothing of theirs is lost; each can be
    resumed with a retry once the kept one has finished. A journal made before endpoints has the
    rule per model instead, which would refuse a second endpoint of a model: that index is dropped."""
    existing = {index["name"] for index in inspect(connection).get_indexes(DeploymentRow.__tablename__)}
    if ONE_ACTIVE_PER_MODEL_INDEX_NAME in existing:
        connection.execute(text(f"DROP INDEX {ONE_ACTIVE_PER_MODEL_INDEX_NAME}"))
    if ONE_ACTIVE_PER_ENDPOINT.name in existing:
        if _index_names_every_final_status(connection):
            return
        # Made when fewer statuses were final (before ``cancelled``): its condition would count a
        # finished deployment as active. Rebuilt with today's condition; the rows are unchanged.
        connection.execute(text(f"DROP INDEX {ONE_ACTIVE_PER_ENDPOINT.name}"))
    active = connection.execute(
        select(DeploymentRow.id, DeploymentRow.namespace, DeploymentRow.endpoint)
        .where(active_status_predicate())
        .order_by(DeploymentRow.created_at, DeploymentRow.id)
    ).all()
    kept: dict[tuple[str, str], str] = {}
    now = utcnow()
    for deployment_id, namespace, endpoint in active:
        running = kept.setdefault((namespace, endpoint), deployment_id)
        if running == deployment_id:
            continue
        error = {
            "code": CONCURRENT_OPERATION,
            "message": (
                f"deployment {running} of endpoint {endpoint!r} in {namespace!r} was already running; "
                "only one operation per endpoint may run at a time, so this one was stopped; retry it "
                "once that one has finished"
            ),
            "step": None,
            "details": {"deployment_id": running},
        }
        connection.execute(
            update(DeploymentRow)
            .where(DeploymentRow.id == deployment_id)
            .values(status=DeploymentStatus.FAILED, error=error, updated_at=now, finished_at=now)
        )
        connection.execute(
            insert(EventRow).values(
                deployment_id=deployment_id, at=now, type="status", step=None, data={"status": DeploymentStatus.FAILED}
            )
        )
    connection.execute(CreateIndex(ONE_ACTIVE_PER_ENDPOINT, if_not_exists=True))
