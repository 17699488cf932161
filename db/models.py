"""The mirror's tables (DESIGN.md, "The mirror"): their names and columns are a public contract.

Status-like columns are text with CHECK constraints rather than database enums, so a new value
is one batch migration on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, PortableJSON, utcnow


def _check_in(column: str, values: type[enum.Enum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class ExecutionStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"
    ROLLING_BACK = "rolling_back"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"
    CANCELLED = "cancelled"
    CRASHED = "crashed"


TERMINAL_STATUSES = frozenset(
    {
        ExecutionStatus.SUCCEEDED,
        ExecutionStatus.FAILED,
        ExecutionStatus.ROLLED_BACK,
        ExecutionStatus.ROLLBACK_FAILED,
        ExecutionStatus.CANCELLED,
        ExecutionStatus.CRASHED,
    }
)


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    OUTCOME_UNKNOWN = "outcome_unknown"


class RollbackStatus(enum.StrEnum):
    NOT_NEEDED = "not_needed"
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    IRREVERSIBLE = "irreversible"


class Trigger(enum.StrEnum):
    UI = "ui"
    SCHEDULE = "schedule"
    ALERT = "alert"
    CLI = "cli"
    API = "api"


class AlertAction(enum.StrEnum):
    RECEIVED = "received"
    TRIGGERED = "triggered"
    DEDUPLICATED = "deduplicated"
    IGNORED = "ignored"
    REJECTED = "rejected"
    CANCELLED_RUN = "cancelled_run"
    FAILED = "failed"


class Runbook(Base):
    __tablename__ = "runbooks"
    __table_args__ = (
        CheckConstraint(
            "type IN ('incident_response', 'maintenance', 'disaster_recovery', 'deployment', "
            "'troubleshooting', 'backup_restore')",
            name="type",
        ),
        CheckConstraint("priority IN ('critical', 'high', 'medium', 'low')", name="priority"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16))
    version: Mapped[str] = mapped_column(String(32))
    definition_hash: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    expected_duration_seconds: Mapped[int] = mapped_column(Integer)
    rto_seconds: Mapped[int | None] = mapped_column(Integer)
    rpo_seconds: Mapped[int | None] = mapped_column(Integer)
    tags: Mapped[list[str]] = mapped_column(PortableJSON)
    source_file: Mapped[str] = mapped_column(String(512))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunbookVersion(Base):
    __tablename__ = "runbook_versions"
    __table_args__ = (UniqueConstraint("runbook_slug", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    runbook_slug: Mapped[str] = mapped_column(ForeignKey("runbooks.slug"), index=True)
    version: Mapped[str] = mapped_column(String(32))
    definition_hash: Mapped[str] = mapped_column(String(64))
    definition: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    changelog: Mapped[list[Any]] = mapped_column(PortableJSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class AdminNote(Base):
    __tablename__ = "admin_notes"
    __table_args__ = (
        CheckConstraint(
            "note_type IN ('best_practice', 'tip', 'warning', 'lesson_learned')", name="note_type"
        ),
        CheckConstraint("source IN ('catalog', 'admin')", name="source"),
        CheckConstraint("helpful_count >= 0", name="helpful_count"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    title: Mapped[str] = mapped_column(String(255))
    body: Mapped[str] = mapped_column(Text)
    note_type: Mapped[str] = mapped_column(String(32))
    is_pinned: Mapped[bool] = mapped_column(Boolean, default=False)
    helpful_count: Mapped[int] = mapped_column(Integer, default=0)
    tags: Mapped[list[str]] = mapped_column(PortableJSON)
    runbook_slugs: Mapped[list[str]] = mapped_column(PortableJSON)
    doc_links: Mapped[list[Any]] = mapped_column(PortableJSON)
    source: Mapped[str] = mapped_column(String(16))  # catalog (synced from YAML) or admin
    author: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class RunbookExecution(Base):
    __tablename__ = "runbook_executions"
    __table_args__ = (
        CheckConstraint(_check_in("status", ExecutionStatus), name="status"),
        CheckConstraint(_check_in("trigger", Trigger), name="trigger"),
        Index(None, "runbook_slug", "started_at"),
        Index(None, "status", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    flow_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, unique=True)
    runbook_slug: Mapped[str] = mapped_column(ForeignKey("runbooks.slug"))
    runbook_version: Mapped[str] = mapped_column(String(32))
    definition_hash: Mapped[str] = mapped_column(String(64))
    definition_snapshot: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    trigger: Mapped[str] = mapped_column(String(16))
    triggered_by: Mapped[str | None] = mapped_column(String(255))
    parameters: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    target: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(32), default=ExecutionStatus.PENDING.value)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
    # The alert that started the run. No foreign key: alert_events already points here, and a
    # cycle of keys would make both tables hard to create and migrate on SQLite.
    alert_event_id: Mapped[int | None] = mapped_column(Integer, index=True)


class StepExecution(Base):
    __tablename__ = "step_executions"
    __table_args__ = (
        UniqueConstraint("execution_id", "position"),
        CheckConstraint(_check_in("status", StepStatus), name="status"),
        CheckConstraint(_check_in("rollback_status", RollbackStatus), name="rollback_status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    execution_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("runbook_executions.id"))
    position: Mapped[int] = mapped_column(Integer)
    step_id: Mapped[str] = mapped_column(String(63))
    title: Mapped[str] = mapped_column(String(255))
    target: Mapped[str | None] = mapped_column(String(255))  # where it ran: "host (root@h:22)"
    command: Mapped[str | None] = mapped_column(Text)  # rendered, secrets masked
    status: Mapped[str] = mapped_column(String(32), default=StepStatus.PENDING.value)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    output_tail: Mapped[str | None] = mapped_column(Text)
    output_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    verify_result: Mapped[str | None] = mapped_column(Text)
    verify_passed: Mapped[bool | None] = mapped_column(Boolean)
    rollback_status: Mapped[str] = mapped_column(
        String(32), default=RollbackStatus.NOT_NEEDED.value
    )
    rollback_output_tail: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)
    approved_by: Mapped[str | None] = mapped_column(String(255))  # or rejected by
    approval_reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class AlertEvent(Base):
    __tablename__ = "alert_events"
    __table_args__ = (
        CheckConstraint("status IN ('firing', 'resolved')", name="status"),
        CheckConstraint(_check_in("action", AlertAction), name="action"),
        Index(None, "source", "dedup_key"),
        Index(None, "received_at"),
        Index(None, "route", "group_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))  # alertmanager, grafana, pagerduty, generic
    dedup_key: Mapped[str] = mapped_column(String(255))
    alert_name: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16))
    labels: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    annotations: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    action: Mapped[str] = mapped_column(String(32), default=AlertAction.RECEIVED.value)
    reason: Mapped[str | None] = mapped_column(Text)
    route: Mapped[str | None] = mapped_column(String(255))
    execution_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("runbook_executions.id"))
    # The alert across its deliveries (Alertmanager fingerprint, PagerDuty incident id, generic
    # key): cooldown and `resolved` look runs up by it. `dedup_key` is one delivery.
    group_key: Mapped[str | None] = mapped_column(String(255))
    flow_run_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)


class ExecutionLease(Base):
    """One active execution per runbook and target (DESIGN.md): a row per held lease.

    The holder renews `expires_at` while it runs; a crashed holder stops renewing, so its
    lease expires and the next run (or the reconciler) may take over.
    """

    __tablename__ = "execution_leases"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)  # runbook|targets
    runbook_slug: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(255))
    execution_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    holder: Mapped[str] = mapped_column(String(255))  # host:pid of the run process
    acquired_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
