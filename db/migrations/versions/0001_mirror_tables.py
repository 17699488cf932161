"""mirror tables: runbooks, versions, notes, executions, steps, alerts

Revision ID: 0001
Revises:
Create Date: 2026-12-04 15:54:30.991698
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "admin_notes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("note_type", sa.String(length=32), nullable=False),
        sa.Column("is_pinned", sa.Boolean(), nullable=False),
        sa.Column("helpful_count", sa.Integer(), nullable=False),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "runbook_slugs",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "doc_links",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("author", sa.String(length=255), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "note_type IN ('best_practice', 'tip', 'warning', 'lesson_learned')",
            name=op.f("ck_admin_notes_note_type"),
        ),
        sa.CheckConstraint("source IN ('catalog', 'admin')", name=op.f("ck_admin_notes_source")),
        sa.CheckConstraint("helpful_count >= 0", name=op.f("ck_admin_notes_helpful_count")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_notes")),
        sa.UniqueConstraint("slug", name=op.f("uq_admin_notes_slug")),
    )
    op.create_table(
        "runbooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=63), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("expected_duration_seconds", sa.Integer(), nullable=False),
        sa.Column("rto_seconds", sa.Integer(), nullable=True),
        sa.Column("rpo_seconds", sa.Integer(), nullable=True),
        sa.Column(
            "tags",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("source_file", sa.String(length=512), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "priority IN ('critical', 'high', 'medium', 'low')", name=op.f("ck_runbooks_priority")
        ),
        sa.CheckConstraint(
            "type IN ('incident_response', 'maintenance', 'disaster_recovery', 'deployment', 'troubleshooting', 'backup_restore')",
            name=op.f("ck_runbooks_type"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runbooks")),
        sa.UniqueConstraint("slug", name=op.f("uq_runbooks_slug")),
    )
    op.create_table(
        "runbook_executions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("flow_run_id", sa.Uuid(), nullable=True),
        sa.Column("runbook_slug", sa.String(length=63), nullable=False),
        sa.Column("runbook_version", sa.String(length=32), nullable=False),
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "definition_snapshot",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("triggered_by", sa.String(length=255), nullable=True),
        sa.Column(
            "parameters",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("alert_event_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'awaiting_approval', 'rolling_back', 'succeeded', 'failed', 'rolled_back', 'rollback_failed', 'cancelled', 'crashed')",
            name=op.f("ck_runbook_executions_status"),
        ),
        sa.CheckConstraint(
            "trigger IN ('ui', 'schedule', 'alert', 'cli', 'api')",
            name=op.f("ck_runbook_executions_trigger"),
        ),
        sa.ForeignKeyConstraint(
            ["runbook_slug"],
            ["runbooks.slug"],
            name=op.f("fk_runbook_executions_runbook_slug_runbooks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runbook_executions")),
        sa.UniqueConstraint("flow_run_id", name=op.f("uq_runbook_executions_flow_run_id")),
    )
    with op.batch_alter_table("runbook_executions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_runbook_executions_alert_event_id"), ["alert_event_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_runbook_executions_runbook_slug_started_at"),
            ["runbook_slug", "started_at"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_runbook_executions_status_started_at"),
            ["status", "started_at"],
            unique=False,
        )

    op.create_table(
        "runbook_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("runbook_slug", sa.String(length=63), nullable=False),
        sa.Column("version", sa.String(length=32), nullable=False),
        sa.Column("definition_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "definition",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "changelog",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["runbook_slug"],
            ["runbooks.slug"],
            name=op.f("fk_runbook_versions_runbook_slug_runbooks"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runbook_versions")),
        sa.UniqueConstraint(
            "runbook_slug", "version", name=op.f("uq_runbook_versions_runbook_slug_version")
        ),
    )
    with op.batch_alter_table("runbook_versions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_runbook_versions_runbook_slug"), ["runbook_slug"], unique=False
        )

    op.create_table(
        "alert_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("dedup_key", sa.String(length=255), nullable=False),
        sa.Column("alert_name", sa.String(length=255), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column(
            "labels",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "annotations",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("route", sa.String(length=255), nullable=True),
        sa.Column("execution_id", sa.Uuid(), nullable=True),
        sa.CheckConstraint(
            "action IN ('received', 'triggered', 'deduplicated', 'ignored', 'rejected', 'cancelled_run', 'failed')",
            name=op.f("ck_alert_events_action"),
        ),
        sa.CheckConstraint("status IN ('firing', 'resolved')", name=op.f("ck_alert_events_status")),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["runbook_executions.id"],
            name=op.f("fk_alert_events_execution_id_runbook_executions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_events")),
    )
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_alert_events_received_at"), ["received_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_alert_events_source_dedup_key"), ["source", "dedup_key"], unique=False
        )

    op.create_table(
        "step_executions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.String(length=63), nullable=False),
        sa.Column("title", sa.String(length=255), nullable=False),
        sa.Column("command", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("output_tail", sa.Text(), nullable=True),
        sa.Column("output_truncated", sa.Boolean(), nullable=False),
        sa.Column("verify_result", sa.Text(), nullable=True),
        sa.Column("verify_passed", sa.Boolean(), nullable=True),
        sa.Column("rollback_status", sa.String(length=32), nullable=False),
        sa.Column("rollback_output_tail", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "rollback_status IN ('not_needed', 'pending', 'running', 'succeeded', 'failed', 'irreversible')",
            name=op.f("ck_step_executions_rollback_status"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'running', 'succeeded', 'failed', 'skipped', 'outcome_unknown')",
            name=op.f("ck_step_executions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["runbook_executions.id"],
            name=op.f("fk_step_executions_execution_id_runbook_executions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_executions")),
        sa.UniqueConstraint(
            "execution_id", "position", name=op.f("uq_step_executions_execution_id_position")
        ),
    )


def downgrade() -> None:

    op.drop_table("step_executions")
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_events_source_dedup_key"))
        batch_op.drop_index(batch_op.f("ix_alert_events_received_at"))

    op.drop_table("alert_events")
    with op.batch_alter_table("runbook_versions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runbook_versions_runbook_slug"))

    op.drop_table("runbook_versions")
    with op.batch_alter_table("runbook_executions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runbook_executions_status_started_at"))
        batch_op.drop_index(batch_op.f("ix_runbook_executions_runbook_slug_started_at"))
        batch_op.drop_index(batch_op.f("ix_runbook_executions_alert_event_id"))

    op.drop_table("runbook_executions")
    op.drop_table("runbooks")
    op.drop_table("admin_notes")
