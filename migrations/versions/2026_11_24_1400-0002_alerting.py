"""alerting: monitors, alerts, webhook_deliveries (outbox)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 14:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "monitors",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "model_id",
            sa.String(128),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("min_labeled", sa.Integer(), nullable=False),
        sa.Column("for_windows", sa.Integer(), nullable=False),
        sa.Column("webhook_url", sa.Text(), nullable=True),
        sa.Column("webhook_secret_enc", sa.Text(), nullable=True),
        sa.Column("webhook_disabled_at", UTCDateTime(), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("current_alert_id", sa.String(40), nullable=True),
        sa.Column("last_evaluated_window", sa.BigInteger(), nullable=True),
        sa.Column("needs_eval", sa.Boolean(), nullable=False),
        sa.Column("evaluated_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("model_id", "name", name="uq_monitors_model_id_name"),
    )
    op.create_index("ix_monitors_model_id", "monitors", ["model_id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "monitor_id",
            sa.String(40),
            sa.ForeignKey("monitors.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "model_id",
            sa.String(128),
            sa.ForeignKey("models.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("window", sa.JSON(), nullable=False),
        sa.Column("resolved_window", sa.JSON(), nullable=True),
        sa.Column("monitor_snapshot", sa.JSON(), nullable=False),
    )
    op.create_index("ix_alerts_monitor_id", "alerts", ["monitor_id"])
    op.create_index("ix_alerts_model_state", "alerts", ["model_id", "state"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "alert_id",
            sa.String(40),
            sa.ForeignKey("alerts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("monitor_id", sa.String(40), nullable=False),
        sa.Column("event_type", sa.String(32), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("secret_enc", sa.Text(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger(), nullable=False),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_webhook_deliveries_alert_id", "webhook_deliveries", ["alert_id"])
    op.create_index("ix_webhook_deliveries_monitor_id", "webhook_deliveries", ["monitor_id"])
    op.create_index(
        "ix_webhook_deliveries_due", "webhook_deliveries", ["status", "next_attempt_us"]
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("alerts")
    op.drop_table("monitors")
