"""Retention: delete raw predictions and actuals of windows past each model's horizon.

Runs in the scheduler tick after the compute pass (app/jobs.py). Deletes go window range
by window range, each range in its own short transaction holding predictions and actuals
of whole windows, so a reader sees a window either complete or gone, and ingest and
compute never wait long behind it. Both tables are reached by their (model_id,
window_start) index, so a run costs what it deletes, not the table size. Window metrics
and slices are never touched (the compute pass also leaves expired windows alone).

Why not PostgreSQL partitions: a partitioned table's unique keys must contain the
partition key, and predictions are unique by (model_id, prediction_id) alone, the key
idempotent ingest relies on; a pending actual has no window to be partitioned by yet.
bench/scale.py measures the bounded delete instead (4.94M rows in ~5 s on 2 shared
cores): no foreign key or trigger fires on these deletes (nothing references the two
tables), so a row costs its heap change and its WAL record.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session, sessionmaker

from app.db import is_postgres, session_scope
from app.ingestion.models import Actual, Prediction
from app.registry import horizon
from app.registry.models import MonitoredModel
from app.windows import record
from app.windows.models import WindowMetric

log = logging.getLogger(__name__)

# Rows (predictions, by the windows' stored counts) one delete transaction aims at:
# big enough that per-statement overhead vanishes, small enough that a transaction
# lasts well under a second and a concurrent write never waits for a lock timeout.
CHUNK_ROWS_PG = 200_000
CHUNK_ROWS_SQLITE = 50_000  # SQLite: the write lock blocks every writer meanwhile


@dataclass
class RetentionReport:
    predictions: int = 0
    actuals: int = 0
    models: int = 0
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class _Policy:
    model_id: str
    retention_days: int
    window_seconds: int


def _policies(session: Session) -> list[_Policy]:
    rows = session.execute(
        select(MonitoredModel.id, MonitoredModel.retention_days, MonitoredModel.window_seconds)
        .where(MonitoredModel.retention_days.is_not(None))
        .order_by(MonitoredModel.id)
    ).all()
    return [_Policy(r.id, int(r.retention_days), int(r.window_seconds)) for r in rows]


def _oldest_window(session: Session, model_id: str) -> int | None:
    """Oldest window holding raw rows (index-driven min on both tables)."""
    starts = [
        session.scalar(select(func.min(table.window_start)).where(table.model_id == model_id))
        for table in (Prediction, Actual)
    ]
    found = [int(s) for s in starts if s is not None]
    return min(found) if found else None


def plan_chunks(
    counts: list[tuple[int, int]], *, first: int, last: int, window_seconds: int, chunk_rows: int
) -> list[tuple[int, int]]:
    """Half-open window_start ranges [a, b) covering [first, last], each holding about
    `chunk_rows` predictions by the computed windows' `counts` (window_start, rows);
    windows without a count (never computed) ride along in whichever range covers them."""
    end = last + window_seconds
    ranges: list[tuple[int, int]] = []
    lo, rows = first, 0
    for ws, n in counts:
        if ws < lo or ws > last:
            continue
        if rows and rows + n > chunk_rows:
            ranges.append((lo, ws))
            lo, rows = ws, 0
        rows += n
    if lo < end:
        ranges.append((lo, end))
    return ranges


# Whether this role may compress the WAL of its own transactions (SET privilege on the
# parameter, PostgreSQL 15+; superuser before) and the server was built with lz4.
_CAN_COMPRESS_WAL = (
    "SELECT 'lz4' = ANY(enumvals) AND {may_set} FROM pg_settings WHERE name = 'wal_compression'"
)
_MAY_SET = {
    True: "has_parameter_privilege('wal_compression', 'SET')",
    False: "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)",
}


def _pg_settings(session: Session) -> list[str]:
    """SET LOCAL statements for each delete transaction (measured in bench/scale.py)."""
    settings = [
        # Safe to lose on a crash: the next run deletes the same rows again.
        "SET LOCAL synchronous_commit = off",
        # A delete by index range gains nothing from JIT, and compiling costs ~0.1 s on
        # a fresh connection.
        "SET LOCAL jit = off",
    ]
    pg15 = (session.get_bind().dialect.server_version_info or (0,)) >= (15,)
    if session.scalar(text(_CAN_COMPRESS_WAL.format(may_set=_MAY_SET[pg15]))):
        # Deleting touches every heap page of the range once, and the first touch after
        # a checkpoint logs the whole page: lz4 halves that WAL (58 -> 32 MB per 380k
        # rows) for less CPU than it saves in writing.
        settings.append("SET LOCAL wal_compression = lz4")
    return settings


def _delete_range(
    session: Session, model_id: str, lo: int, hi: int, settings: list[str]
) -> tuple[int, int]:
    for statement in settings:
        session.execute(text(statement))
    counts = []
    for table in ("predictions", "actuals"):
        result = session.execute(
            text(
                f"DELETE FROM {table} WHERE model_id = :m "
                "AND window_start >= :lo AND window_start < :hi"
            ),
            {"m": model_id, "lo": lo, "hi": hi},
        )
        counts.append(int(result.rowcount or 0))  # type: ignore[attr-defined]
    return counts[0], counts[1]


def _delete_stale_pending(session: Session, model_id: str, before_us: int) -> int:
    """Pending actuals (no prediction ever came) received before the horizon."""
    result = session.execute(
        text(
            "DELETE FROM actuals WHERE model_id = :m AND pending AND window_start IS NULL "
            "AND received_us < :before"
        ),
        {"m": model_id, "before": before_us},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _expire_model(
    *,
    factory: sessionmaker[Session],
    policy: _Policy,
    now_s: int,
    report: RetentionReport,
    chunk_rows: int | None,
) -> None:
    last = horizon.last_expired_window(
        now_s=now_s, retention_days=policy.retention_days, window_seconds=policy.window_seconds
    )
    with session_scope(factory) as session:
        first = _oldest_window(session, policy.model_id)
        pg = is_postgres(session)
        settings = _pg_settings(session) if pg else []
        counts: list[tuple[int, int]] = []
        if first is not None and first <= last:
            counts = [
                (int(ws), int(n))
                for ws, n in session.execute(
                    select(WindowMetric.window_start, record.column(WindowMetric, "predictions"))
                    .where(
                        WindowMetric.model_id == policy.model_id,
                        WindowMetric.window_start >= first,
                        WindowMetric.window_start <= last,
                    )
                    .order_by(WindowMetric.window_start)
                )
            ]
    if first is not None and first <= last:
        chunks = plan_chunks(
            counts,
            first=first,
            last=last,
            window_seconds=policy.window_seconds,
            chunk_rows=chunk_rows or (CHUNK_ROWS_PG if pg else CHUNK_ROWS_SQLITE),
        )
        for lo, hi in chunks:
            with session_scope(factory) as session:
                p, a = _delete_range(session, policy.model_id, lo, hi, settings)
            report.predictions += p
            report.actuals += a
    before_us = horizon.horizon_s(now_s=now_s, retention_days=policy.retention_days) * 1_000_000
    with session_scope(factory) as session:
        report.actuals += _delete_stale_pending(session, policy.model_id, before_us)


def run_retention(
    *,
    factory: sessionmaker[Session],
    clock: Callable[[], float] = time.time,
    chunk_rows: int | None = None,
) -> RetentionReport:
    """Delete every model's raw rows past its retention_days. Safe to run in several
    processes at once (deletes are idempotent) and to interrupt (each range commits)."""
    started = time.perf_counter()
    report = RetentionReport()
    with session_scope(factory) as session:
        policies = _policies(session)
    now_s = int(clock())
    for policy in policies:
        _expire_model(
            factory=factory, policy=policy, now_s=now_s, report=report, chunk_rows=chunk_rows
        )
        report.models += 1
    report.seconds = time.perf_counter() - started
    if report.predictions or report.actuals:
        log.info(
            "retention: %d predictions and %d actuals deleted in %.3fs",
            report.predictions,
            report.actuals,
            report.seconds,
        )
    return report


_ROWS_KEPT = (
    "SELECT w.model_id, sum(w.predictions), sum(w.labeled) FROM window_metrics AS w "
    "JOIN (SELECT m.id AS model_id, (SELECT min(p.window_start) FROM predictions AS p "
    "      WHERE p.model_id = m.id) AS oldest FROM models AS m {where}) AS o "
    "ON o.model_id = w.model_id AND w.window_start >= o.oldest "
    "GROUP BY w.model_id"
)


def rows_kept(session: Session, model_id: str | None = None) -> dict[str, tuple[int, int]]:
    """(predictions, actuals) stored per model (or for one), as of each window's last
    compute.

    Summed from window metrics from the oldest window still holding raw rows (an
    index-driven min per model), so a scrape never counts millions of rows; actuals
    are the labeled rows plus those still pending (a partial index)."""
    models = select(MonitoredModel.id)
    pending = select(Actual.model_id, func.count()).where(Actual.pending)
    params = {}
    if model_id is not None:
        models = models.where(MonitoredModel.id == model_id)
        pending = pending.where(Actual.model_id == model_id)
        params = {"m": model_id}
    out = {str(m): (0, 0) for m in session.scalars(models)}
    sql = _ROWS_KEPT.format(where="WHERE m.id = :m" if model_id is not None else "")
    for mid, predictions, labeled in session.execute(text(sql), params):
        out[str(mid)] = (int(predictions or 0), int(labeled or 0))
    for mid, count in session.execute(pending.group_by(Actual.model_id)):
        p, a = out.get(str(mid), (0, 0))
        out[str(mid)] = (p, a + int(count))
    return out
