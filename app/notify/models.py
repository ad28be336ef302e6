"""The webhook outbox: one row per notification, written in the same transaction as
the alert transition it announces, delivered at least once by the delivery job."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    # Doubles as the Standard Webhooks `webhook-id`: stable across retries.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    alert_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("alerts.id", ondelete="CASCADE"), index=True
    )
    monitor_id: Mapped[str] = mapped_column(String(40), index=True)
    event_type: Mapped[str] = mapped_column(String(32))  # alert.firing | alert.resolved
    # The exact bytes to POST (as text), so every retry sends an identical body.
    body: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    # app.notify.formats: how it is sent (standard: signed; pagerduty: secret_enc holds
    # the routing key, added to the body at send time; slack, alertmanager: unsigned).
    format: Mapped[str] = mapped_column(String(16), server_default="standard")
    secret_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    # pending -> delivered | dead | cancelled
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_us: Mapped[int] = mapped_column(BigInteger)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_us"),)
