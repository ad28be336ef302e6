"""log_loss_p99: the 0.99 weighted quantile of the per-row log loss, per window and slice

Revision ID: 0016
Revises: 0011
Create Date: 2026-12-06 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("window_metrics", "slice_metrics")


def upgrade() -> None:
    # Windows stored before this revision keep NULL until they are next computed: their
    # raw rows may already be gone (retention), so nothing is recomputed here.
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("log_loss_p99", sa.Float(), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("log_loss_p99")
