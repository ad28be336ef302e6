"""What the windows and notify layers need to know of monitors, handed to them by the
job runner (app/jobs.py) rather than imported by them: they sit below alerting."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.alerting.models import Monitor
from app.windows import slices

log = logging.getLogger(__name__)


def pinned_slices(*, session: Session, model_id: str) -> set[tuple[str, str, str]]:
    """(kind, key, value) of the slices the model's monitors watch: always precomputed,
    so a monitor never depends on its value being among the top N."""
    pinned: set[tuple[str, str, str]] = set()
    for version, segment in session.execute(
        select(Monitor.model_version, Monitor.segment).where(
            Monitor.model_id == model_id,
            or_(Monitor.model_version.is_not(None), Monitor.segment.is_not(None)),
        )
    ):
        if version is not None:
            pinned.add((slices.VERSION, "", version))
        if segment is not None:
            key, _, value = segment.partition(":")
            pinned.add((slices.SEGMENT, key, value))
    return pinned


class MonitorWebhooks:
    """The monitors as owners of webhook URLs (app.notify.delivery.WebhookOwner)."""

    def lock(self, session: Session, monitor_id: str) -> None:
        session.get(Monitor, monitor_id, with_for_update=True)

    def disable(self, session: Session, monitor_id: str, url: str, now: datetime) -> None:
        # Only if the monitor still points at the URL that answered 410: a monitor
        # whose URL was changed meanwhile must keep delivering to the new one.
        monitor = session.get(Monitor, monitor_id)
        if (
            monitor is not None
            and monitor.webhook_url == url
            and monitor.webhook_disabled_at is None
        ):
            monitor.webhook_disabled_at = now
            log.warning("monitor %s: webhook disabled, receiver answered 410 Gone", monitor.id)


MONITOR_WEBHOOKS = MonitorWebhooks()
