"""multiclass and calibration fields, per-slice window metrics, monitor filters,
fan-out (per segment value) monitors

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW_WINDOW_COLUMNS = ("class_rates", "class_log_loss", "reliability", "ece", "calibration_gap")


def _new_metric_columns() -> list[sa.Column]:
    return [
        sa.Column("class_rates", sa.JSON(), nullable=True),
        sa.Column("class_log_loss", sa.JSON(), nullable=True),
        sa.Column("reliability", sa.JSON(), nullable=True),
        sa.Column("ece", sa.Float(), nullable=True),
        sa.Column("calibration_gap", sa.Float(), nullable=True),
    ]


def upgrade() -> None:
    # computed_at stays the last column of window_metrics only by accident of history;
    # nothing depends on column order.
    with op.batch_alter_table("window_metrics") as batch:
        for column in _new_metric_columns():
            batch.add_column(column)
    op.create_table(
        "slice_metrics",
        sa.Column(
            "model_id",
            sa.String(128),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("other", sa.Boolean(), primary_key=True),
        sa.Column("value", sa.String(256), primary_key=True),
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
        *_new_metric_columns(),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_slice_metrics_model_window", "slice_metrics", ["model_id", "window_start"])
    # Windows computed before this revision have neither the new fields nor slices:
    # queue them for the next compute pass ("WHERE true" lets SQLite parse the upsert).
    op.execute(
        "INSERT INTO dirty_windows (model_id, window_start, generation) "
        "SELECT model_id, window_start, 1 FROM window_metrics WHERE true "
        "ON CONFLICT (model_id, window_start) DO NOTHING"
    )
    with op.batch_alter_table("monitors") as batch:
        batch.add_column(sa.Column("model_version", sa.String(128), nullable=True))
        batch.add_column(sa.Column("segment", sa.String(400), nullable=True))
        batch.add_column(sa.Column("segment_key", sa.String(64), nullable=True))
    op.create_table(
        "monitor_segment_states",
        sa.Column(
            "monitor_id",
            sa.String(40),
            sa.ForeignKey("monitors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("value", sa.String(256), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("current_alert_id", sa.String(40), nullable=True),
        sa.Column("last_evaluated_window", sa.BigInteger(), nullable=True),
    )
    with op.batch_alter_table("alerts") as batch:
        batch.add_column(sa.Column("segment", sa.String(400), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("segment")
    op.drop_table("monitor_segment_states")
    with op.batch_alter_table("monitors") as batch:
        batch.drop_column("segment_key")
        batch.drop_column("segment")
        batch.drop_column("model_version")
    op.drop_index("ix_slice_metrics_model_window", table_name="slice_metrics")
    op.drop_table("slice_metrics")
    with op.batch_alter_table("window_metrics") as batch:
        for name in _NEW_WINDOW_COLUMNS:
            batch.drop_column(name)
