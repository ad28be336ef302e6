"""window_changes: an insert-only log of changed windows (no hot row on ingest)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 00:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "window_changes",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column(
            "model_id",
            sa.String(128),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    # Changes not folded yet go to the queue they were meant for.
    op.execute(
        "INSERT INTO dirty_windows (model_id, window_start, generation) "
        "SELECT DISTINCT model_id, window_start, 1 FROM window_changes AS c "
        "WHERE NOT EXISTS (SELECT 1 FROM dirty_windows AS d "
        "WHERE d.model_id = c.model_id AND d.window_start = c.window_start)"
    )
    op.execute(
        "UPDATE dirty_windows SET generation = generation + 1 WHERE EXISTS (SELECT 1 "
        "FROM window_changes AS c WHERE c.model_id = dirty_windows.model_id "
        "AND c.window_start = dirty_windows.window_start)"
    )
    op.drop_table("window_changes")
