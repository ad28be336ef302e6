"""Monitors (rules on a model's windows) and alerts (one row per firing episode)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class Monitor(Base):
    __tablename__ = "monitors"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    model_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("models.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    min_labeled: Mapped[int] = mapped_column(Integer)
    for_windows: Mapped[int] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Encrypted at rest (app.notify.secrets); never returned by the API.
    webhook_secret_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    # How alerts reach webhook_url (app.notify.formats): standard | slack | pagerduty |
    # alertmanager; severity as PagerDuty and Alertmanager receive it.
    webhook_format: Mapped[str] = mapped_column(String(16), server_default="standard")
    severity: Mapped[str] = mapped_column(String(16), server_default="warning")
    # PagerDuty Events API routing key, encrypted at rest like the webhook secret.
    routing_key_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Set when a receiver answered 410 Gone: no more deliveries until the URL changes.
    webhook_disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    # Derived state of the latest evaluation: "ok" | "firing" | "no_data".
    state: Mapped[str] = mapped_column(String(16))
    current_alert_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # Optional slice the rule watches instead of the whole model (None: whole model).
    model_version: Mapped[str | None] = mapped_column(String(128), nullable=True)
    segment: Mapped[str | None] = mapped_column(String(400), nullable=True)  # "key:value"
    # Fan-out: the rule runs separately on every value of this segment key that has its
    # own precomputed rows (MonitorSegmentState per value). Exclusive with the two above.
    segment_key: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_evaluated_window: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Set in the same transaction that writes new windows for the model (or changes the
    # monitor); cleared in the transaction that evaluates it. A crash in between only
    # delays the evaluation, it never skips it.
    needs_eval: Mapped[bool] = mapped_column(Boolean)
    evaluated_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    __table_args__ = (UniqueConstraint("model_id", "name", name="uq_monitors_model_id_name"),)


class MonitorSegmentState(Base):
    """The alert state of one value of a fan-out (segment_key) monitor."""

    __tablename__ = "monitor_segment_states"

    monitor_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("monitors.id", ondelete="CASCADE"), primary_key=True
    )
    value: Mapped[str] = mapped_column(String(256), primary_key=True)
    state: Mapped[str] = mapped_column(String(16))  # "ok" | "firing" | "no_data"
    current_alert_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    last_evaluated_window: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Alert(Base):
    __tablename__ = "alerts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    monitor_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("monitors.id", ondelete="CASCADE"), index=True
    )
    model_id: Mapped[str] = mapped_column(String(128), ForeignKey("models.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(16))  # "firing" | "resolved"
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # The metric window that tripped it (and the one that resolved it), as sent.
    window_start: Mapped[int] = mapped_column(BigInteger)
    window: Mapped[dict[str, Any]] = mapped_column(JSON)
    resolved_window: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Monitor as it was when the alert fired (name, rule), for the payload and history.
    monitor_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    # "key:value" of a fan-out monitor's alert (None for every other monitor).
    segment: Mapped[str | None] = mapped_column(String(400), nullable=True)

    __table_args__ = (Index("ix_alerts_model_state", "model_id", "state"),)
