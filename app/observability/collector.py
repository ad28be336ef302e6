"""Gauges read from the database at scrape time (one short read-only session, a handful
of bulk queries whatever the number of models), plus the scheduler's last runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.alerting.models import Alert
from app.notify.models import WebhookDelivery
from app.observability import counters
from app.registry.models import MonitoredModel
from app.windows import record
from app.windows.models import WindowMetric

log = logging.getLogger(__name__)

OUTBOX_STATUSES = ("pending", "dead")

# (metric name, WindowMetric column, help) for each model's latest window: the window
# record's gauges, and when that window started.
WINDOW_GAUGES: tuple[tuple[str, str, str], ...] = (
    *record.GAUGES,
    (
        "lossmon_window_start_timestamp_seconds",
        "window_start",
        "Start of the latest window with predictions (unix seconds).",
    ),
)
_WINDOW_COLUMNS = sorted({column for _, column, _ in WINDOW_GAUGES})


@dataclass
class Snapshot:
    windows: list[dict[str, Any]] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    firing: dict[str, int] = field(default_factory=dict)


def latest_windows(session: Session) -> list[dict[str, Any]]:
    """Each model's latest computed window that has predictions (one query)."""
    latest = (
        select(
            WindowMetric.model_id.label("model_id"),
            func.max(WindowMetric.window_start).label("window_start"),
        )
        .where(record.column(WindowMetric, "predictions") > 0)
        .group_by(WindowMetric.model_id)
        .subquery()
    )
    columns = [WindowMetric.model_id, *(getattr(WindowMetric, c) for c in _WINDOW_COLUMNS)]
    stmt = (
        select(*columns)
        .join(
            latest,
            and_(
                WindowMetric.model_id == latest.c.model_id,
                WindowMetric.window_start == latest.c.window_start,
            ),
        )
        .order_by(WindowMetric.model_id)
    )
    return [dict(row._mapping) for row in session.execute(stmt)]


def outbox_counts(session: Session) -> dict[str, int]:
    """Deliveries by status, for the statuses worth watching (index on status)."""
    counts = dict.fromkeys(OUTBOX_STATUSES, 0)
    stmt = (
        select(WebhookDelivery.status, func.count())
        .where(WebhookDelivery.status.in_(OUTBOX_STATUSES))
        .group_by(WebhookDelivery.status)
    )
    for status, count in session.execute(stmt):
        counts[status] = int(count)
    return counts


def firing_alerts(session: Session) -> dict[str, int]:
    """Firing alerts per model, 0 for every model without one."""
    counts = {str(m): 0 for m in session.scalars(select(MonitoredModel.id))}
    stmt = (
        select(Alert.model_id, func.count()).where(Alert.state == "firing").group_by(Alert.model_id)
    )
    for model_id, count in session.execute(stmt):
        counts[model_id] = int(count)
    return counts


def read_snapshot(session: Session) -> Snapshot:
    return Snapshot(
        windows=latest_windows(session),
        outbox=outbox_counts(session),
        firing=firing_alerts(session),
    )


def _families() -> dict[str, GaugeMetricFamily]:
    fams = {name: GaugeMetricFamily(name, doc, labels=["model"]) for name, _, doc in WINDOW_GAUGES}
    fams["lossmon_outbox_deliveries"] = GaugeMetricFamily(
        "lossmon_outbox_deliveries",
        "Webhook deliveries in the outbox by status (pending: not yet delivered; "
        "dead: retries exhausted).",
        labels=["status"],
    )
    fams["lossmon_alerts_firing"] = GaugeMetricFamily(
        "lossmon_alerts_firing", "Alerts currently firing, per model.", labels=["model"]
    )
    return fams


def _scheduler_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "lossmon_scheduler_last_success_timestamp_seconds",
        "Last successful run of each scheduler job (unix seconds). Per process: only "
        "the process running the scheduler (serve, or worker) reports it.",
        labels=["job"],
    )


_SUCCESS = "lossmon_scrape_database_success"
_DURATION = "lossmon_scrape_database_duration_seconds"


class DatabaseCollector(Collector):
    """Reads the gauges above from app.state.read_session_factory at each scrape. A
    database failure does not fail the scrape: lossmon_scrape_database_success is 0
    and the database gauges are left out."""

    def __init__(self, state: Any) -> None:
        self._state = state

    def describe(self) -> Iterable[Metric]:
        yield from _families().values()
        yield _scheduler_family()
        yield GaugeMetricFamily(_SUCCESS, "")
        yield GaugeMetricFamily(_DURATION, "")

    def collect(self) -> Iterable[Metric]:
        scheduler = _scheduler_family()
        for job, at in sorted(dict(counters.last_run_at).items()):
            scheduler.add_metric([job], at)
        yield scheduler

        started = time.perf_counter()
        try:
            factory: sessionmaker[Session] = self._state.read_session_factory
            with factory() as session:
                snapshot = read_snapshot(session)
        except Exception:
            log.warning("/metrics: reading the database failed", exc_info=True)
            snapshot = None
        elapsed = time.perf_counter() - started
        yield GaugeMetricFamily(
            _SUCCESS,
            "1 if this scrape read the database gauges, 0 if the database failed.",
            value=0 if snapshot is None else 1,
        )
        yield GaugeMetricFamily(
            _DURATION, "Time this scrape spent reading the database.", value=elapsed
        )
        if snapshot is None:
            return

        fams = _families()
        for window in snapshot.windows:
            model = str(window["model_id"])
            for name, column, _ in WINDOW_GAUGES:
                value = window[column]
                if value is not None:
                    fams[name].add_metric([model], float(value))
        for status in OUTBOX_STATUSES:
            fams["lossmon_outbox_deliveries"].add_metric([status], snapshot.outbox[status])
        for model, count in sorted(snapshot.firing.items()):
            fams["lossmon_alerts_firing"].add_metric([model], count)
        yield from fams.values()
