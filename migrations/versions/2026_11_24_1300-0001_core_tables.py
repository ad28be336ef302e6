"""core tables: models, predictions, actuals, dirty_windows, window_metrics

Revision ID: 0001
Revises:
Create Date: 2026-11-24 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _model_fk() -> sa.Column:
    return sa.Column(
        "model_id",
        sa.String(128),
        sa.ForeignKey("models.id", ondelete="CASCADE"),
        primary_key=True,
    )


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("window", sa.String(16), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("reference_base_rate", sa.Float(), nullable=True),
        sa.Column("clip_eps", sa.Float(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "predictions",
        _model_fk(),
        sa.Column("prediction_id", sa.String(256), primary_key=True),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("probabilities", sa.JSON(), nullable=True),
        sa.Column("model_version", sa.String(128), nullable=False),
        sa.Column("segments", sa.JSON(), nullable=True),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_predictions_model_window", "predictions", ["model_id", "window_start"])
    op.create_table(
        "actuals",
        _model_fk(),
        sa.Column("prediction_id", sa.String(256), primary_key=True),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("ts_us", sa.BigInteger(), nullable=False),
        sa.Column("received_us", sa.BigInteger(), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
    )
    op.create_index(
        "ix_actuals_pending",
        "actuals",
        ["model_id"],
        postgresql_where=sa.text("pending = true"),
        sqlite_where=sa.text("pending = 1"),
    )
    op.create_table(
        "dirty_windows",
        _model_fk(),
        sa.Column("window_start", sa.BigInteger(), primary_key=True),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("claim_token", sa.String(64), nullable=True),
        sa.Column("leased_until_us", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "window_metrics",
        _model_fk(),
        sa.Column("window_start", sa.BigInteger(), primary_key=True),
        sa.Column("window_end", sa.BigInteger(), nullable=False),
        sa.Column("predictions", sa.Integer(), nullable=False),
        sa.Column("labeled", sa.Integer(), nullable=False),
        sa.Column("weight_sum", sa.Float(), nullable=False),
        sa.Column("label_coverage", sa.Float(), nullable=True),
        sa.Column("positive_rate", sa.Float(), nullable=True),
        sa.Column("log_loss", sa.Float(), nullable=True),
        sa.Column("baseline_log_loss", sa.Float(), nullable=True),
        sa.Column("skill", sa.Float(), nullable=True),
        sa.Column("log_loss_stderr", sa.Float(), nullable=True),
        sa.Column("log_loss_median", sa.Float(), nullable=True),
        sa.Column("log_loss_p90", sa.Float(), nullable=True),
        sa.Column("expected_log_loss", sa.Float(), nullable=True),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("window_metrics")
    op.drop_table("dirty_windows")
    op.drop_index("ix_actuals_pending", table_name="actuals")
    op.drop_table("actuals")
    op.drop_index("ix_predictions_model_window", table_name="predictions")
    op.drop_table("predictions")
    op.drop_table("models")
