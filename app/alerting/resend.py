"""Alertmanager re-posts: a firing alert is sent again at least every
``LOSSMON_ALERTMANAGER_RESEND_S``, as Alertmanager expects of its clients (it resolves
an alert on its own once it has not heard of it for its resolve_timeout).

One re-post row per alert (event ``alert.resend``), re-armed each time: the outbox keeps
its guarantees (at-least-once, retries, SSRF check at send time) without growing by a
row per minute of a long episode. Flush only: the job runner commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.alerting.models import Alert, Monitor
from app.notify import outbox
from app.notify.formats import RESEND_EVENT
from app.notify.models import WebhookDelivery


def resend_firing(*, session: Session, resend_s: float, now: datetime) -> int:
    """Queue (or re-arm) the re-post of every firing Alertmanager alert last posted
    more than ``resend_s`` ago; returns how many."""
    firing = session.execute(
        select(Alert.id, Monitor.id)
        .join(Monitor, Monitor.id == Alert.monitor_id)
        .where(
            Alert.state == "firing",
            Monitor.webhook_format == "alertmanager",
            Monitor.webhook_url.is_not(None),
            Monitor.webhook_disabled_at.is_(None),
        )
        .order_by(Alert.id)
    ).all()
    if not firing:
        return 0
    ids = [alert_id for alert_id, _ in firing]
    rows = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.alert_id.in_(ids),
            WebhookDelivery.event_type.in_(("alert.firing", RESEND_EVENT)),
            WebhookDelivery.format == "alertmanager",
        )
        .order_by(WebhookDelivery.alert_id, WebhookDelivery.id)
        .with_for_update(skip_locked=True)
    ).all()
    first: dict[str, WebhookDelivery] = {}
    again: dict[str, WebhookDelivery] = {}
    for row in rows:
        (again if row.event_type == RESEND_EVENT else first)[row.alert_id] = row
    due = now - timedelta(seconds=resend_s)
    queued = 0
    for alert_id, monitor_id in firing:
        original = first.get(alert_id)
        if original is None:
            continue  # fired before the monitor had an Alertmanager destination
        repost = again.get(alert_id)
        last = repost if repost is not None else original
        if last.status == "pending" or last.created_at > due:
            continue  # still on its way, or posted recently enough
        if repost is None:
            outbox.enqueue(
                session=session,
                alert_id=alert_id,
                monitor_id=monitor_id,
                event_type=RESEND_EVENT,
                payload=None,
                url=original.url,
                secret_enc=None,
                now=now,
                fmt="alertmanager",
                body=original.body,
            )
        else:
            repost.status = "pending"
            repost.attempts = 0
            repost.next_attempt_us = outbox.to_us(now)
            repost.created_at = now
            repost.delivered_at = None
            repost.last_error = None
            repost.last_status_code = None
        queued += 1
    session.flush()
    return queued
