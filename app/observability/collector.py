"""Gauges read from the database at scrape time (one short read-only session, a handful
of bulk queries whatever the number of models), plus the scheduler's last runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from app import counters
from app.alerting.models import Alert, Monitor
from app.notify.models import WebhookDelivery
from app.registry.models import MonitoredModel
from app.retention import service as retention_service
from app.windows import record
from app.windows.models import DirtyWindow, WindowChange, WindowMetric

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

# The same gauges for each model's latest *evaluated* window: the newest with enough
# labels to be judged (labels arrive late, so the newest window is usually thin and its
# log loss noisy or absent; a Grafana alert wants this one).
EVALUATED_PREFIX = "lossmon_evaluated_window_"
EVALUATED_GAUGES: tuple[tuple[str, str, str], ...] = tuple(
    (
        name.replace("lossmon_window_", EVALUATED_PREFIX),
        column,
        doc.replace("latest window with predictions", "latest evaluated window")
        .replace("the latest window", "the latest evaluated window")
        .replace("latest window", "latest evaluated window")
        + " Evaluated: the newest window with at least min_labeled labeled rows (the "
        "smallest min_labeled of the model's monitors; 200 without monitors).",
    )
    for name, column, doc in WINDOW_GAUGES
)
# min_labeled of a model without monitors: the monitors' default.
DEFAULT_MIN_LABELED = 200


@dataclass
class Snapshot:
    windows: list[dict[str, Any]] = field(default_factory=list)
    evaluated: list[dict[str, Any]] = field(default_factory=list)
    outbox: dict[str, int] = field(default_factory=dict)
    oldest_pending_age_s: float = 0.0
    backlog: dict[str, int] = field(default_factory=dict)
    firing: dict[str, int] = field(default_factory=dict)
    rows_kept: dict[str, tuple[int, int]] = field(default_factory=dict)


def _rows_at(session: Session, latest: Any) -> list[dict[str, Any]]:
    """The gauge columns of the windows named by ``latest`` (model_id, window_start)."""
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


def latest_windows(session: Session, now_s: int | None = None) -> list[dict[str, Any]]:
    """Each model's latest computed window that has predictions (one query). Windows
    starting after ``now_s`` are left out: one prediction stamped in the far future
    must not take the gauges over (ingest bounds timestamps too; this is the reader's
    own guard)."""
    now_s = int(time.time()) if now_s is None else now_s
    latest = (
        select(
            WindowMetric.model_id.label("model_id"),
            func.max(WindowMetric.window_start).label("window_start"),
        )
        .where(record.column(WindowMetric, "predictions") > 0, WindowMetric.window_start <= now_s)
        .group_by(WindowMetric.model_id)
        .subquery()
    )
    return _rows_at(session, latest)


def evaluated_windows(session: Session, now_s: int | None = None) -> list[dict[str, Any]]:
    """Each model's latest window with a log loss and at least min_labeled labeled rows
    (the smallest min_labeled of its enabled monitors, else DEFAULT_MIN_LABELED)."""
    now_s = int(time.time()) if now_s is None else now_s
    gate = (
        select(Monitor.model_id.label("model_id"), func.min(Monitor.min_labeled).label("n"))
        .where(Monitor.enabled.is_(True))
        .group_by(Monitor.model_id)
        .subquery()
    )
    latest = (
        select(
            WindowMetric.model_id.label("model_id"),
            func.max(WindowMetric.window_start).label("window_start"),
        )
        .outerjoin(gate, gate.c.model_id == WindowMetric.model_id)
        .where(
            record.column(WindowMetric, "log_loss").is_not(None),
            record.column(WindowMetric, "labeled") >= func.coalesce(gate.c.n, DEFAULT_MIN_LABELED),
            WindowMetric.window_start <= now_s,
        )
        .group_by(WindowMetric.model_id)
        .subquery()
    )
    return _rows_at(session, latest)


def oldest_pending_age(session: Session, now: datetime) -> float:
    """Seconds since the oldest undelivered (pending) outbox row was written; 0 if none."""
    oldest = session.scalar(
        select(func.min(WebhookDelivery.created_at)).where(WebhookDelivery.status == "pending")
    )
    if oldest is None:
        return 0.0
    if oldest.tzinfo is None:
        oldest = oldest.replace(tzinfo=UTC)
    return max(0.0, (now - oldest).total_seconds())


def backlog(session: Session) -> dict[str, int]:
    """Windows waiting for the compute pass: the dirty queue and the insert-only change
    log not yet folded into it (a window may be counted in both)."""
    return {
        "dirty_windows": int(session.scalar(select(func.count()).select_from(DirtyWindow)) or 0),
        "window_changes": int(session.scalar(select(func.count()).select_from(WindowChange)) or 0),
    }


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
    now = datetime.now(UTC)
    now_s = int(now.timestamp())
    return Snapshot(
        windows=latest_windows(session, now_s),
        evaluated=evaluated_windows(session, now_s),
        outbox=outbox_counts(session),
        oldest_pending_age_s=oldest_pending_age(session, now),
        backlog=backlog(session),
        firing=firing_alerts(session),
        rows_kept=retention_service.rows_kept(session),
    )


def _families() -> dict[str, GaugeMetricFamily]:
    fams = {
        name: GaugeMetricFamily(name, doc, labels=["model"])
        for name, _, doc in (*WINDOW_GAUGES, *EVALUATED_GAUGES)
    }
    fams["lossmon_outbox_oldest_pending_age_seconds"] = GaugeMetricFamily(
        "lossmon_outbox_oldest_pending_age_seconds",
        "Age of the oldest webhook delivery not delivered yet (0 when none is pending).",
    )
    fams["lossmon_compute_backlog_windows"] = GaugeMetricFamily(
        "lossmon_compute_backlog_windows",
        "Windows waiting for the compute pass, by queue (dirty_windows: marked dirty; "
        "window_changes: change log rows not folded yet).",
        labels=["queue"],
    )
    fams["lossmon_outbox_deliveries"] = GaugeMetricFamily(
        "lossmon_outbox_deliveries",
        "Webhook deliveries in the outbox by status (pending: not yet delivered; "
        "dead: retries exhausted).",
        labels=["status"],
    )
    fams["lossmon_alerts_firing"] = GaugeMetricFamily(
        "lossmon_alerts_firing", "Alerts currently firing, per model.", labels=["model"]
    )
    fams["lossmon_rows_kept"] = GaugeMetricFamily(
        "lossmon_rows_kept",
        "Raw rows stored per model (kind: predictions, actuals) as of the last compute "
        "pass; retention_days bounds them.",
        labels=["model", "kind"],
    )
    return fams


def _scheduler_families() -> list[GaugeMetricFamily]:
    """Scheduler liveness, per process: only the process running the scheduler (serve,
    or worker) reports it. A stalled scheduler shows as an old last run."""
    success = GaugeMetricFamily(
        "lossmon_scheduler_last_success_timestamp_seconds",
        "Last successful run of each scheduler job (unix seconds). Per process: only "
        "the process running the scheduler (serve, or worker) reports it.",
        labels=["job"],
    )
    started = GaugeMetricFamily(
        "lossmon_scheduler_last_run_timestamp_seconds",
        "Start of the last run (tick) of each scheduler job, successful or not (unix seconds).",
        labels=["job"],
    )
    duration = GaugeMetricFamily(
        "lossmon_scheduler_last_run_duration_seconds",
        "How long the last run (tick) of each scheduler job took.",
        labels=["job"],
    )
    for job, at in sorted(dict(counters.last_run_at).items()):
        success.add_metric([job], at)
    for job, at in sorted(dict(counters.last_started_at).items()):
        started.add_metric([job], at)
    for job, seconds in sorted(dict(counters.last_duration_s).items()):
        duration.add_metric([job], seconds)
    return [success, started, duration]


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
        yield from _scheduler_families()
        yield GaugeMetricFamily(_SUCCESS, "")
        yield GaugeMetricFamily(_DURATION, "")

    def collect(self) -> Iterable[Metric]:
        yield from _scheduler_families()

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
        for rows, gauges in (
            (snapshot.windows, WINDOW_GAUGES),
            (snapshot.evaluated, EVALUATED_GAUGES),
        ):
            for window in rows:
                model = str(window["model_id"])
                for name, column, _ in gauges:
                    value = window[column]
                    if value is not None:
                        fams[name].add_metric([model], float(value))
        fams["lossmon_outbox_oldest_pending_age_seconds"].add_metric(
            [], snapshot.oldest_pending_age_s
        )
        for queue, count in sorted(snapshot.backlog.items()):
            fams["lossmon_compute_backlog_windows"].add_metric([queue], count)
        for status in OUTBOX_STATUSES:
            fams["lossmon_outbox_deliveries"].add_metric([status], snapshot.outbox[status])
        for model, count in sorted(snapshot.firing.items()):
            fams["lossmon_alerts_firing"].add_metric([model], count)
        for model, (predictions, actuals) in sorted(snapshot.rows_kept.items()):
            fams["lossmon_rows_kept"].add_metric([model, "predictions"], predictions)
            fams["lossmon_rows_kept"].add_metric([model, "actuals"], actuals)
        yield from fams.values()
