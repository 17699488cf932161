"""alert events: the alert's group (for cooldown and resolve) and the flow run it started

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04 18:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("group_key", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("flow_run_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_alert_events_route_group_key"), ["route", "group_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("alert_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alert_events_route_group_key"))
        batch_op.drop_column("flow_run_id")
        batch_op.drop_column("group_key")
