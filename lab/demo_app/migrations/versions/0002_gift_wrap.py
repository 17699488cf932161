"""orders.gift_wrap (expand only: the previous release ignores the column)"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade():
    op.add_column("orders", sa.Column("gift_wrap", sa.Boolean, nullable=False, server_default="0"))


def downgrade():
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("gift_wrap")
