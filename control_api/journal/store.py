"""The deployment journal: every deploy and each of its steps, persisted with SQLAlchemy.

SQLite under the data dir by default; PostgreSQL by URL for several replicas. The journal is what lets a
restarted service resume unfinished deploys from their first unfinished step, and what the status API
reads. Outputs are stored per step (run id, version, digest, commit SHA, URL ...) and merged on read.
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker
from sqlalchemy.schema import CreateIndex

from control_api.errors import ConflictError, NotFoundError
from control_api.redaction import redact, redact_value


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """Everything we store is UTC: SQLite hands it back naive, PostgreSQL in the server's own time zone."""
    if value is None:
        return None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


class DeploymentStatus:
    PENDING = "pending"
    REGISTERED = "registered"
    DEPLOYED = "deployed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    AWAITING_REVIEW = "awaiting_review"
    ROLLED_BACK = "rolled_back"
    UNDEPLOYED = "undeployed"

    # States in which nothing is running and nothing will run without a new request or a retry.
    FINAL = frozenset({REGISTERED, DEPLOYED, FAILED, TIMED_OUT, ROLLED_BACK, UNDEPLOYED})


POLL_PREFIX = "poll_"  # outputs that only a waiting step's next look needs


class StepStatus:
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class NulSafeText(TypeDecorator):
    """Text PostgreSQL accepts: its text type cannot hold NUL, which a training script's output or an
    error message can contain. There NUL becomes U+FFFD; other databases store the text unchanged."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect) -> str | None:
        if value is not None and dialect.name == "postgresql":
            return value.replace("\x00", "\ufffd")
        return value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="deploy")  # deploy | rollback | undeploy
    model_name: Mapped[str] = mapped_column(String(63), index=True)
    namespace: Mapped[str] = mapped_column(String(63))
    status: Mapped[str] = mapped_column(String(32), index=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(128), default="anonymous")
    idempotency_key: Mapped[str | None] = mapped_column(String(200), nullable=True, index=True)
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    steps: Mapped[list[StepRow]] = relationship(
        back_populates="deployment", order_by="StepRow.position", cascade="all, delete-orphan"
    )


def _active_status_predicate():
    return DeploymentRow.status.not_in(sorted(DeploymentStatus.FINAL))


# One deploy, rollback or undeploy per model at a time, enforced by the database itself so that it
# holds across replicas sharing one journal: at most one row per (namespace, model_name) may be in a
# status that is not final. PostgreSQL and SQLite both support partial unique indexes.
ONE_ACTIVE_PER_MODEL = Index(
    "uq_deployments_one_active_per_model",
    DeploymentRow.namespace,
    DeploymentRow.model_name,
    unique=True,
    postgresql_where=_active_status_predicate(),
    sqlite_where=_active_status_predicate(),
)


class StepRow(Base):
    __tablename__ = "deployment_steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=StepStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    message: Mapped[str | None] = mapped_column(NulSafeText, nullable=True)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    log_tail: Mapped[str | None] = mapped_column(NulSafeText, nullable=True)

    deployment: Mapped[DeploymentRow] = relationship(back_populates="steps")


class EventRow(Base):
    """Step transitions and log lines, in order, for the event stream and for audit."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    type: Mapped[str] = mapped_column(String(16))  # step | log | status
    step: Mapped[str | None] = mapped_column(String(32), nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ServiceFlagRow(Base):
    """Facts about the service that must outlive any file an attacker could delete, such as that API
    keys were ever created (from then on ``auth.mode=auto`` means ``required``)."""

    __tablename__ = "service_flags"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(256))
    set_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


# ---- plain records handed to the rest of the service (no lazy loading outside a session) ---------


@dataclass(frozen=True)
class StepRecord:
    name: str
    position: int
    status: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None
    outputs: dict[str, Any]
    log_tail: str | None


@dataclass(frozen=True)
class DeploymentRecord:
    id: str
    kind: str
    model_name: str
    namespace: str
    status: str
    request: dict[str, Any]
    requested_by: str
    idempotency_key: str | None
    error: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    steps: tuple[StepRecord, ...] = field(default_factory=tuple)

    @property
    def outputs(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for step in self.steps:
            merged.update(step.outputs or {})
        return merged

    def step(self, name: str) -> StepRecord | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def is_final(self) -> bool:
        return self.status in DeploymentStatus.FINAL


def _to_record(row: DeploymentRow) -> DeploymentRecord:
    return DeploymentRecord(
        id=row.id,
        kind=row.kind,
        model_name=row.model_name,
        namespace=row.namespace,
        status=row.status,
        request=dict(row.request or {}),
        requested_by=row.requested_by,
        idempotency_key=row.idempotency_key,
        error=dict(row.error) if row.error else None,
        created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at),
        finished_at=as_utc(row.finished_at),
        steps=tuple(
            StepRecord(
                name=s.name,
                position=s.position,
                status=s.status,
                attempts=s.attempts,
                started_at=as_utc(s.started_at),
                finished_at=as_utc(s.finished_at),
                message=s.message,
                outputs=dict(s.outputs or {}),
                log_tail=s.log_tail,
            )
            for s in row.steps
        ),
    )


def _enable_sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # pragma: no cover - exercised implicitly
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
        _add_one_active_per_model_index(connection)


CONCURRENT_OPERATION = "concurrent_operation"


def _add_one_active_per_model_index(connection: Connection) -> None:
    """Give a journal made before the one-active-operation index that index (a new journal got it
    from create_all). Such a journal can hold several active operations on one model, which the
    index cannot accept: the oldest keeps running, and each later one ends ``failed`` with the
    error ``concurrent_operation`` naming the one kept. Nothing of theirs is lost; each can be
    resumed with a retry once the kept one has finished."""
    existing = {index["name"] for index in inspect(connection).get_indexes(DeploymentRow.__tablename__)}
    if ONE_ACTIVE_PER_MODEL.name in existing:
        return
    active = connection.execute(
        select(DeploymentRow.id, DeploymentRow.namespace, DeploymentRow.model_name)
        .where(_active_status_predicate())
        .order_by(DeploymentRow.created_at, DeploymentRow.id)
    ).all()
    kept: dict[tuple[str, str], str] = {}
    now = utcnow()
    for deployment_id, namespace, model_name in active:
        running = kept.setdefault((namespace, model_name), deployment_id)
        if running == deployment_id:
            continue
        error = {
            "code": CONCURRENT_OPERATION,
            "message": (
                f"deployment {running} of model {model_name!r} in {namespace!r} was already running; "
                "only one operation per model may run at a time, so this one was stopped; retry it "
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
            EventRow.__table__.insert().values(
                deployment_id=deployment_id, at=now, type="status", step=None, data={"status": DeploymentStatus.FAILED}
            )
        )
    connection.execute(CreateIndex(ONE_ACTIVE_PER_MODEL, if_not_exists=True))


# How often an insert or status change refused by ONE_ACTIVE_PER_MODEL is tried again when the
# operation that caused the refusal has finished by the time we look for it.
CONFLICT_ATTEMPTS = 3


def _copy_for_insert(row: DeploymentRow) -> DeploymentRow:
    """A fresh, transient copy of a deployment row whose insert was rolled back."""
    copy = DeploymentRow(
        id=row.id,
        kind=row.kind,
        model_name=row.model_name,
        namespace=row.namespace,
        status=row.status,
        request=row.request,
        requested_by=row.requested_by,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
    copy.steps = [StepRow(position=step.position, name=step.name, outputs={}) for step in row.steps]
    return copy


class Journal:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite:///"):
            database = Path(url.removeprefix("sqlite:///").split("?", 1)[0])
            database.parent.mkdir(parents=True, exist_ok=True)
            # Owner-only from the first byte (SQLite gives its journal files the database's mode).
            os.close(os.open(database, os.O_CREAT | os.O_WRONLY, 0o600))
        self.engine = create_engine(url, future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            _enable_sqlite_pragmas(self.engine)
        _create_schema_once(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite allows one writer; serialising writes in-process keeps concurrent deploys from
        # tripping over each other. PostgreSQL handles this itself.
        self._write_lock = threading.RLock() if self.engine.dialect.name == "sqlite" else _NullLock()

    def close(self) -> None:
        self.engine.dispose()

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def _session(self) -> Session:
        return self._sessions()

    # ---- deployments ---------------------------------------------------------------------------

    def create(
        self,
        *,
        kind: str,
        model_name: str,
        namespace: str,
        request: dict[str, Any],
        step_names: list[str],
        requested_by: str = "anonymous",
        idempotency_key: str | None = None,
        deployment_id: str | None = None,
    ) -> DeploymentRecord:
        now = utcnow()
        row = DeploymentRow(
            id=deployment_id or uuid.uuid4().hex,
            kind=kind,
            model_name=model_name,
            namespace=namespace,
            status=DeploymentStatus.PENDING,
            request=request,
            requested_by=requested_by,
            idempotency_key=idempotency_key,
            created_at=now,
            updated_at=now,
        )
        row.steps = [StepRow(position=i, name=name, outputs={}) for i, name in enumerate(step_names)]
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                with self._write_lock, self._session() as session, session.begin():
                    session.add(row)
                break
            except IntegrityError:
                # Another replica started an operation on this model between our check and this
                # insert, and the one-active-per-model index refused ours: 409 naming that one. If it
                # has already finished, the model is free now and the insert is tried again.
                self.refuse_if_busy(model_name, namespace)
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise
                row = _copy_for_insert(row)
        return self.get(row.id)

    def get(self, deployment_id: str) -> DeploymentRecord:
        with self._session() as session:
            row = session.get(DeploymentRow, deployment_id)
            if row is None:
                raise NotFoundError(f"deployment {deployment_id!r} not found", code="deployment_not_found")
            return _to_record(row)

    def find_by_idempotency_key(self, key: str, requested_by: str) -> DeploymentRecord | None:
        with self._session() as session:
            row = session.scalars(
                select(DeploymentRow)
                .where(DeploymentRow.idempotency_key == key, DeploymentRow.requested_by == requested_by)
                .order_by(DeploymentRow.created_at)
            ).first()
            return _to_record(row) if row else None

    def list(
        self,
        *,
        model_name: str | None = None,
        status: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
        namespaces: list[str] | None = None,
    ) -> tuple[list[DeploymentRecord], int]:
        with self._session() as session:
            query = select(DeploymentRow)
            count_query = select(func.count()).select_from(DeploymentRow)
            if namespaces is not None:  # a namespace-scoped API key sees its namespaces only
                query = query.where(DeploymentRow.namespace.in_(namespaces))
                count_query = count_query.where(DeploymentRow.namespace.in_(namespaces))
            for column, value in (
                (DeploymentRow.model_name, model_name),
                (DeploymentRow.status, status),
                (DeploymentRow.kind, kind),
            ):
                if value is not None:
                    query = query.where(column == value)
                    count_query = count_query.where(column == value)
            total = session.scalar(count_query) or 0
            rows = session.scalars(
                query.order_by(DeploymentRow.created_at.desc(), DeploymentRow.id).limit(limit).offset(offset)
            ).all()
            return [_to_record(r) for r in rows], total

    def unfinished(self) -> list[DeploymentRecord]:
        with self._session() as session:
            rows = session.scalars(
                select(DeploymentRow).where(_active_status_predicate()).order_by(DeploymentRow.created_at)
            ).all()
            return [_to_record(r) for r in rows]

    def active_for_model(self, model_name: str, namespace: str) -> DeploymentRecord | None:
        with self._session() as session:
            row = session.scalars(
                select(DeploymentRow)
                .where(
                    DeploymentRow.model_name == model_name,
                    DeploymentRow.namespace == namespace,
                    _active_status_predicate(),
                )
                .order_by(DeploymentRow.created_at)
            ).first()
            return _to_record(row) if row else None

    def refuse_if_busy(self, model_name: str, namespace: str) -> None:
        """One deploy, rollback or undeploy per model at a time: 409 naming the running one. This
        check gives the early, friendly answer; the ONE_ACTIVE_PER_MODEL index is what makes the rule
        hold across replicas, and ``create`` and ``set_status`` turn its refusal into this same 409."""
        running = self.active_for_model(model_name, namespace)
        if running is not None:
            raise ConflictError(
                f"model {model_name!r} in {namespace!r} is busy with {running.kind} {running.id}; "
                "wait for it to finish (GET /mlops/deployments/{id}) and try again",
                code="deploy_in_progress",
                details={"deployment_id": running.id, "status": running.status},
            )

    def set_status(
        self,
        deployment_id: str,
        status: str,
        *,
        error: dict[str, Any] | None = None,
        clear_error: bool = False,
        finished: bool = False,
    ) -> None:
        for attempt in range(CONFLICT_ATTEMPTS):
            try:
                self._set_status(deployment_id, status, error=error, clear_error=clear_error, finished=finished)
                return
            except IntegrityError:
                # A retry makes a final deployment active again: refused while another operation on
                # the same model runs, in this replica or another.
                record = self.get(deployment_id)
                self.refuse_if_busy(record.model_name, record.namespace)
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise

    def _set_status(
        self, deployment_id: str, status: str, *, error: dict[str, Any] | None, clear_error: bool, finished: bool
    ) -> None:
        with self._write_lock, self._session() as session, session.begin():
            row = session.get(DeploymentRow, deployment_id)
            if row is None:
                raise NotFoundError(f"deployment {deployment_id!r} not found", code="deployment_not_found")
            row.status = status
            row.updated_at = utcnow()
            if error is not None:
                row.error = redact_value(error)
            elif clear_error:
                row.error = None
            row.finished_at = utcnow() if finished else None
            session.add(EventRow(deployment_id=deployment_id, type="status", data={"status": status}))

    # ---- steps ---------------------------------------------------------------------------------

    def _step_row(self, session: Session, deployment_id: str, name: str) -> StepRow:
        """The step, locked until the transaction ends: callers read-modify-write it (attempts, merged
        outputs), and on PostgreSQL other threads and replicas would otherwise overwrite each other's
        changes. SQLite ignores the clause; the write lock serialises there."""
        row = session.scalars(
            select(StepRow).where(StepRow.deployment_id == deployment_id, StepRow.name == name).with_for_update()
        ).one()
        return row

    def step_started(self, deployment_id: str, name: str) -> None:
        with self._write_lock, self._session() as session, session.begin():
            row = self._step_row(session, deployment_id, name)
            row.status = StepStatus.RUNNING
            row.attempts += 1
            row.started_at = utcnow()
            row.finished_at = None
            row.message = None
            session.add(
                EventRow(
                    deployment_id=deployment_id,
                    type="step",
                    step=name,
                    data={"status": StepStatus.RUNNING, "attempt": row.attempts},
                )
            )

    def step_progress(self, deployment_id: str, name: str, outputs: dict[str, Any]) -> None:
        """Persist partial outputs while a step runs (e.g. the MLflow run id before training starts)."""
        with self._write_lock, self._session() as session, session.begin():
            row = self._step_row(session, deployment_id, name)
            row.outputs = {**(row.outputs or {}), **outputs}

    def step_waiting(self, deployment_id: str, name: str, message: str, outputs: dict[str, Any]) -> None:
        """A waiting step answered "not yet": keep it running, with its message and saved state."""
        message = redact(message)
        with self._write_lock, self._session() as session, session.begin():
            row = self._step_row(session, deployment_id, name)
            row.message = message
            row.outputs = {**(row.outputs or {}), **outputs}

    def step_finished(
        self,
        deployment_id: str,
        name: str,
        status: str,
        *,
        message: str | None = None,
        outputs: dict[str, Any] | None = None,
        log_tail: str | None = None,
    ) -> None:
        # Error messages and log tails quote remotes and scripts: no secret is ever stored.
        message = redact(message) if message else message
        log_tail = redact(log_tail) if log_tail else log_tail
        with self._write_lock, self._session() as session, session.begin():
            row = self._step_row(session, deployment_id, name)
            row.status = status
            row.finished_at = utcnow()
            row.message = message
            if outputs:
                row.outputs = {**(row.outputs or {}), **outputs}
            if log_tail is not None:
                row.log_tail = log_tail
            session.add(
                EventRow(
                    deployment_id=deployment_id,
                    type="step",
                    step=name,
                    data={"status": status, "message": message},
                )
            )

    def reset_steps_from(self, deployment_id: str, name: str) -> None:
        """Mark ``name`` and the steps after it pending again (retry after a failure)."""
        with self._write_lock, self._session() as session, session.begin():
            row = session.get(DeploymentRow, deployment_id)
            if row is None:
                raise NotFoundError(f"deployment {deployment_id!r} not found", code="deployment_not_found")
            # Locked like _step_row, so a step finishing meanwhile is not overwritten with a stale status.
            steps = session.scalars(
                select(StepRow)
                .where(StepRow.deployment_id == deployment_id)
                .order_by(StepRow.position)
                .with_for_update()
            ).all()
            position = next(s.position for s in steps if s.name == name)
            for step in steps:
                if step.position >= position and step.status in (StepStatus.FAILED, StepStatus.RUNNING):
                    step.status = StepStatus.PENDING
                    # A waiting step's clock and evidence start again on a retry.
                    if step.outputs and any(key.startswith(POLL_PREFIX) for key in step.outputs):
                        step.outputs = {k: v for k, v in step.outputs.items() if not k.startswith(POLL_PREFIX)}

    # ---- service flags -------------------------------------------------------------------------

    def flag(self, key: str) -> str | None:
        with self._session() as session:
            row = session.get(ServiceFlagRow, key)
            return row.value if row is not None else None

    def set_flag(self, key: str, value: str) -> None:
        """Set once: a flag that is already there keeps its first value and time."""
        try:
            with self._write_lock, self._session() as session, session.begin():
                if session.get(ServiceFlagRow, key) is None:
                    session.add(ServiceFlagRow(key=key, value=value))
        except IntegrityError:
            pass  # another replica set it at the same moment

    # ---- events --------------------------------------------------------------------------------

    def add_log(self, deployment_id: str, step: str, lines: list[str]) -> None:
        if not lines:
            return
        with self._write_lock, self._session() as session, session.begin():
            for line in lines:
                session.add(EventRow(deployment_id=deployment_id, type="log", step=step, data={"line": redact(line)}))

    def events(self, deployment_id: str, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        with self._session() as session:
            rows = session.scalars(
                select(EventRow)
                .where(EventRow.deployment_id == deployment_id, EventRow.id > after_id)
                .order_by(EventRow.id)
                .limit(limit)
            ).all()
            return [
                {"id": r.id, "at": as_utc(r.at).isoformat(), "type": r.type, "step": r.step, "data": r.data}
                for r in rows
            ]


class _NullLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
