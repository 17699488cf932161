"""orders.engraving (expand only: older releases ignore the column)"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade():
    op.add_column("orders", sa.Column("engraving", sa.String(80)))


def downgrade():
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("engraving")
