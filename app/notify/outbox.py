"""Writing to the webhook outbox (in the caller's transaction; flush only)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.notify.models import WebhookDelivery

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(when: datetime) -> int:
    """Aware datetime -> integer microseconds since the epoch (exact, no float rounding)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime")
    return (when - _EPOCH) // timedelta(microseconds=1)


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def serialize(payload: Any) -> str:
    """The exact body text; computed once so every retry sends identical bytes."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=False, ensure_ascii=False)


def enqueue(
    *,
    session: Session,
    alert_id: str,
    monitor_id: str,
    event_type: str,
    payload: Any,
    url: str,
    secret_enc: str | None,
    now: datetime,
    fmt: str = "standard",
    body: str | None = None,
) -> WebhookDelivery:
    """One outbox row for ``payload`` (or the exact ``body`` text, for a re-post)."""
    delivery = WebhookDelivery(
        # Also the webhook-id header: receivers dedupe retries on it.
        id="msg_" + uuid.uuid4().hex,
        alert_id=alert_id,
        monitor_id=monitor_id,
        event_type=event_type,
        body=serialize(payload) if body is None else body,
        url=url,
        format=fmt,
        secret_enc=secret_enc,
        status="pending",
        attempts=0,
        next_attempt_us=to_us(now),
        created_at=now,
    )
    session.add(delivery)
    session.flush()
    return delivery


def cancel_pending(*, session: Session, alert_id: str, event_type: str, reason: str) -> None:
    """Cancel the alert's not yet delivered rows of one event type."""
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.alert_id == alert_id,
            WebhookDelivery.event_type == event_type,
            WebhookDelivery.status == "pending",
        )
        .values(status="cancelled", last_error=f"cancelled: superseded by {reason}")
        .execution_options(synchronize_session=False)
    )
