"""window source: which path computed a window or slice ("database" or "spark")

Revision ID: 0011
Revises: 0008
Create Date: 2026-12-06 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("window_metrics", "slice_metrics")


def upgrade() -> None:
    # The server default fills the rows already stored: every one of them was computed
    # from the database.
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("source", sa.String(16), nullable=False, server_default="database")
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("source")
