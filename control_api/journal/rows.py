"""The journal's tables (SQLAlchemy rows)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON, ColumnElement, DateTime, Dialect, ForeignKey, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from control_api.journal.records import DeploymentStatus, StepStatus, utcnow


class NulSafeText(TypeDecorator):
    """Text PostgreSQL accepts: its text type cannot hold NUL, which a training script's output or an
    error message can contain. There NUL becomes U+FFFD; other databases store the text unchanged."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is not None and dialect.name == "postgresql":
            return value.replace("\x00", "\ufffd")
        return value


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON}


class DeploymentRow(Base):
    __tablename__ = "deployments"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="deploy")  # deploy | deploy_version | rollback | undeploy
    model_name: Mapped[str] = mapped_column(String(63), index=True)
    # The endpoint the operation changes (a model may serve several); the model's name by default.
    endpoint: Mapped[str] = mapped_column(String(63), server_default="")
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


def active_status_predicate() -> ColumnElement[bool]:
    return DeploymentRow.status.not_in(sorted(DeploymentStatus.FINAL))


# One deploy, rollback or undeploy per endpoint at a time, enforced by the database itself so that
# it holds across replicas sharing one journal: at most one row per (namespace, endpoint) may be in a
# status that is not final. PostgreSQL and SQLite both support partial unique indexes.
ONE_ACTIVE_PER_ENDPOINT = Index(
    "uq_deployments_one_active_per_endpoint",
    DeploymentRow.namespace,
    DeploymentRow.endpoint,
    unique=True,
    postgresql_where=active_status_predicate(),
    sqlite_where=active_status_predicate(),
)


# The same rule per model, as journals made before endpoints have it; replaced when they are opened.
ONE_ACTIVE_PER_MODEL_INDEX_NAME = "uq_deployments_one_active_per_model"


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
