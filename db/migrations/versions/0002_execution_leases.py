"""execution leases; where a step ran, who approved it and why

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 16:18:06.350467
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("step_executions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("target", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("approved_by", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("approval_reason", sa.Text(), nullable=True))

    op.create_table(
        "execution_leases",
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("runbook_slug", sa.String(length=63), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=False),
        sa.Column("execution_id", sa.Uuid(), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_execution_leases")),
    )
    with op.batch_alter_table("execution_leases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_execution_leases_execution_id"), ["execution_id"], unique=False
        )


def downgrade() -> None:

    with op.batch_alter_table("execution_leases", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_execution_leases_execution_id"))

    op.drop_table("execution_leases")
    with op.batch_alter_table("step_executions", schema=None) as batch_op:
        batch_op.drop_column("approval_reason")
        batch_op.drop_column("approved_by")
        batch_op.drop_column("target")
