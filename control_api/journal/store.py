"""The deployment journal: every deploy and each of its steps, persisted with SQLAlchemy.

SQLite under the data dir by default; PostgreSQL by URL for several replicas. The journal is what lets a
restarted service resume unfinished deploys from their first unfinished step, and what the status API
reads. Outputs are stored per step (run id, version, digest, commit SHA, URL ...) and merged on read.

This module is the journal's API; its tables are in ``rows``, the records it hands out in ``records``
and the database set-up in ``engine``. It keeps one rule of its own, because only the database can
hold it across replicas: one active operation per endpoint (``ONE_ACTIVE_PER_ENDPOINT``), whose
refusal it reports as ``ActiveOperationExists``.
"""

from __future__ import annotations

import builtins
import threading
import uuid
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from sqlalchemy import ColumnElement, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from control_api.errors import ConflictError, NotFoundError
from control_api.journal.engine import CONCURRENT_OPERATION, SCHEMA_LOCK_KEY, open_engine
from control_api.journal.records import (
    POLL_PREFIX,
    DeploymentRecord,
    DeploymentStatus,
    StepRecord,
    StepStatus,
    as_utc,
    utcnow,
)
from control_api.journal.rows import (
    ONE_ACTIVE_PER_ENDPOINT,
    DeploymentRow,
    EventRow,
    ServiceFlagRow,
    StepRow,
    active_status_predicate,
)
from control_api.redaction import redact, redact_value

__all__ = [
    "CONCURRENT_OPERATION",
    "ONE_ACTIVE_PER_ENDPOINT",
    "POLL_PREFIX",
    "SCHEMA_LOCK_KEY",
    "ActiveOperationExists",
    "DeploymentRecord",
    "DeploymentStatus",
    "Journal",
    "StepRecord",
    "StepStatus",
]


class ActiveOperationExists(ConflictError):
    """The endpoint already has an active operation (``running``): the database refused a second one."""

    def __init__(self, running: DeploymentRecord) -> None:
        super().__init__(
            f"endpoint {running.endpoint!r} in {running.namespace!r} is busy with {running.kind} {running.id}",
            code="deploy_in_progress",
            details={"deployment_id": running.id, "status": running.status},
        )
        self.running = running


def _to_record(row: DeploymentRow) -> DeploymentRecord:
    return DeploymentRecord(
        id=row.id,
        kind=row.kind,
        model_name=row.model_name,
        namespace=row.namespace,
        status=row.status,
        request=dict(row.request or {}),
        endpoint=row.endpoint,
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


# The statuses a ``cancelling`` deployment may move to: only the orchestrator's end of the cancel.
CANCEL_EXITS = frozenset({DeploymentStatus.CANCELLING, DeploymentStatus.CANCELLED})

# How often an insert or status change refused by ONE_ACTIVE_PER_ENDPOINT is tried again when the
# operation that caused the refusal has finished by the time we look for it.
CONFLICT_ATTEMPTS = 3


def _copy_for_insert(row: DeploymentRow) -> DeploymentRow:
    """A fresh, transient copy of a deployment row whose insert was rolled back."""
    copy = DeploymentRow(
        id=row.id,
        kind=row.kind,
        model_name=row.model_name,
        endpoint=row.endpoint,
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
        self.engine = open_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite allows one writer; serialising writes in-process keeps concurrent deploys from
        # tripping over each other. PostgreSQL handles this itself.
        self._write_lock: AbstractContextManager[Any] = (
            threading.RLock() if self.engine.dialect.name == "sqlite" else nullcontext()
        )

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
        step_names: builtins.list[str],
        requested_by: str = "anonymous",
        idempotency_key: str | None = None,
        deployment_id: str | None = None,
        endpoint: str | None = None,
    ) -> DeploymentRecord:
        now = utcnow()
        endpoint = endpoint or model_name
        row = DeploymentRow(
            id=deployment_id or uuid.uuid4().hex,
            kind=kind,
            model_name=model_name,
            endpoint=endpoint,
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
                # Another operation on this endpoint started (in this replica or another) and the
                # one-active-per-endpoint index refused ours: name that one. If it has already
                # finished, the endpoint is free now and the insert is tried again.
                self._refuse_if_active(endpoint, namespace)
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
        endpoint: str | None = None,
        limit: int = 50,
        offset: int = 0,
        namespaces: builtins.list[str] | None = None,
    ) -> tuple[builtins.list[DeploymentRecord], int]:
        with self._session() as session:
            query = select(DeploymentRow)
            count_query = select(func.count()).select_from(DeploymentRow)
            if namespaces is not None:  # a namespace-scoped API key sees its namespaces only
                query = query.where(DeploymentRow.namespace.in_(namespaces))
                count_query = count_query.where(DeploymentRow.namespace.in_(namespaces))
            for column, value in (
                (DeploymentRow.model_name, model_name),
                (DeploymentRow.endpoint, endpoint),
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

    def unfinished(self) -> builtins.list[DeploymentRecord]:
        with self._session() as session:
            rows = session.scalars(
                select(DeploymentRow).where(active_status_predicate()).order_by(DeploymentRow.created_at)
            ).all()
            return [_to_record(r) for r in rows]

    def active_for_endpoint(self, endpoint: str, namespace: str) -> DeploymentRecord | None:
        return self._first_on_endpoint(endpoint, namespace, active_status_predicate(), DeploymentRow.created_at)

    def endpoint_holder(self, endpoint: str, namespace: str) -> DeploymentRecord | None:
        """The newest operation that finished changing what the endpoint serves: a deploy or a
        rollback that left it serving a model, or an undeploy that left it free."""
        changed = (DeploymentStatus.DEPLOYED, DeploymentStatus.ROLLED_BACK, DeploymentStatus.UNDEPLOYED)
        return self._first_on_endpoint(
            endpoint,
            namespace,
            DeploymentRow.status.in_(changed),
            DeploymentRow.finished_at.desc(),
            DeploymentRow.created_at.desc(),
        )

    def _first_on_endpoint(
        self, endpoint: str, namespace: str, condition: ColumnElement[bool], *order: Any
    ) -> DeploymentRecord | None:
        with self._session() as session:
            row = session.scalars(
                select(DeploymentRow)
                .where(DeploymentRow.endpoint == endpoint, DeploymentRow.namespace == namespace, condition)
                .order_by(*order)
            ).first()
            return _to_record(row) if row else None

    def _refuse_if_active(self, endpoint: str, namespace: str) -> None:
        running = self.active_for_endpoint(endpoint, namespace)
        if running is not None:
            raise ActiveOperationExists(running)

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
                # the same endpoint runs, in this replica or another.
                record = self.get(deployment_id)
                self._refuse_if_active(record.endpoint, record.namespace)
                if attempt == CONFLICT_ATTEMPTS - 1:
                    raise

    def _set_status(
        self, deployment_id: str, status: str, *, error: dict[str, Any] | None, clear_error: bool, finished: bool
    ) -> None:
        with self._write_lock, self._session() as session, session.begin():
            row = session.get(DeploymentRow, deployment_id)
            if row is None:
                raise NotFoundError(f"deployment {deployment_id!r} not found", code="deployment_not_found")
            if row.status == DeploymentStatus.CANCELLING and status not in CANCEL_EXITS:
                # A cancel was asked for while a worker ran a step: the worker's own status changes
                # (the next step's label, a failure the cancel caused) must not hide it.
                return
            row.status = status
            row.updated_at = utcnow()
            if error is not None:
                row.error = redact_value(error)
            elif clear_error:
                row.error = None
            row.finished_at = utcnow() if finished else None
            session.add(EventRow(deployment_id=deployment_id, type="status", data={"status": status}))

    def request_cancel(self, deployment_id: str, cancelled_by: str) -> tuple[DeploymentRecord, bool]:
        """Mark a deployment ``cancelling`` and record who asked and at which step; the record and
        whether this call asked (False when a cancel was already under way).

        Raises ``ConflictError`` (``deployment_finished``) when it has already finished."""
        with self._write_lock, self._session() as session, session.begin():
            row = session.scalars(
                select(DeploymentRow).where(DeploymentRow.id == deployment_id).with_for_update()
            ).one_or_none()
            if row is None:
                raise NotFoundError(f"deployment {deployment_id!r} not found", code="deployment_not_found")
            if row.status in DeploymentStatus.FINAL:
                raise ConflictError(
                    f"deployment {deployment_id} already finished as {row.status}; there is nothing to cancel",
                    code="deployment_finished",
                    details={"deployment_id": deployment_id, "status": row.status},
                )
            asked = row.status != DeploymentStatus.CANCELLING
            if asked:
                ordered = sorted(row.steps, key=lambda s: s.position)
                current = next(
                    (s.name for s in ordered if s.status == StepStatus.RUNNING),
                    next((s.name for s in ordered if s.status == StepStatus.PENDING), None),
                )
                row.status = DeploymentStatus.CANCELLING
                row.updated_at = utcnow()
                row.error = {
                    "code": "cancelled",
                    "message": f"cancelled by {cancelled_by} during step {current or '(none)'}",
                    "step": current,
                    "details": {"cancelled_by": cancelled_by, "step": current},
                }
                session.add(
                    EventRow(
                        deployment_id=deployment_id,
                        type="cancel",
                        step=current,
                        data={"cancelled_by": cancelled_by, "step": current},
                    )
                )
                session.add(
                    EventRow(deployment_id=deployment_id, type="status", data={"status": DeploymentStatus.CANCELLING})
                )
        return self.get(deployment_id), asked

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

    def add_log(self, deployment_id: str, step: str, lines: builtins.list[str]) -> None:
        if not lines:
            return
        with self._write_lock, self._session() as session, session.begin():
            for line in lines:
                session.add(EventRow(deployment_id=deployment_id, type="log", step=step, data={"line": redact(line)}))

    def events(self, deployment_id: str, after_id: int = 0, limit: int = 1000) -> builtins.list[dict[str, Any]]:
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
