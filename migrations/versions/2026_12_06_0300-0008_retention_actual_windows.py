"""retention_days per model; each matched actual stores its prediction's window

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 23:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
    # A plain ADD COLUMN (no batch rewrite): nullable without default is instant on both
    # databases, whatever the size of the table.
    op.add_column("actuals", sa.Column("window_start", sa.BigInteger(), nullable=True))
    # Actuals already matched take their prediction's window (one statement; pending
    # ones stay NULL until the compute pass's sweep matches them).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE actuals AS a SET window_start = p.window_start FROM predictions AS p "
            "WHERE NOT a.pending AND p.model_id = a.model_id "
            "AND p.prediction_id = a.prediction_id"
        )
    else:
        op.execute(
            "UPDATE actuals SET window_start = (SELECT p.window_start FROM predictions AS p "
            "WHERE p.model_id = actuals.model_id AND p.prediction_id = actuals.prediction_id) "
            "WHERE NOT pending"
        )
    op.create_index("ix_actuals_model_window", "actuals", ["model_id", "window_start"])


def downgrade() -> None:
    op.drop_index("ix_actuals_model_window", table_name="actuals")
    with op.batch_alter_table("actuals") as batch:
        batch.drop_column("window_start")
    with op.batch_alter_table("models") as batch:
        batch.drop_column("retention_days")
