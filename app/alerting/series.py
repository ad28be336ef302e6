"""Where a monitor's windows come from, and which of them its rule is judged on.

A monitor watches the whole model (window_metrics rows) or one slice of it: one model
version or one segment key:value (slice_metrics rows of that value, other = false).
Both tables carry the same metric columns, so one set of queries serves both and the
rules see the same :class:`WindowPoint` either way.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Select, desc, or_, select
from sqlalchemy.orm import Session

from app.alerting import rules
from app.alerting.models import Alert, Monitor
from app.alerting.watched import pinned_slices
from app.windows import history_json, record
from app.windows import service as window_service
from app.windows.models import SEGMENT, VERSION, SliceMetric, WindowMetric
from app.windows.record import column

MetricRow = WindowMetric | SliceMetric
MetricTable = type[WindowMetric] | type[SliceMetric]
Slice = tuple[str, str, str]  # (kind, key, value) as slice_metrics stores it


def watched_slice(model_version: str | None, segment: str | None) -> Slice | None:
    """The slice a monitor watches (None: the whole model)."""
    if model_version is not None:
        return VERSION, "", model_version
    if segment is not None:
        key, _, value = segment.partition(":")  # keys never contain ':', values may
        return SEGMENT, key, value
    return None


def _source(
    monitor: Monitor, value: str | None = None
) -> tuple[MetricTable, list[ColumnElement[bool]]]:
    """Where the monitor's windows live; `value`: one value of a fan-out monitor's key."""
    if monitor.segment_key is not None and value is not None:
        watched: Slice | None = (SEGMENT, monitor.segment_key, value)
    else:
        watched = watched_slice(monitor.model_version, monitor.segment)
    if watched is None:
        return WindowMetric, [WindowMetric.model_id == monitor.model_id]
    kind, key, value = watched
    # Only the value's own rows: an `other` row mixes many values. Monitors' slices are
    # pinned (always precomputed), so the value never hides in `other`. A fan-out
    # monitor's values are not pinned: it judges the windows where the value was among
    # the top N, i.e. had its own row.
    return SliceMetric, [
        SliceMetric.model_id == monitor.model_id,
        SliceMetric.kind == kind,
        SliceMetric.key == key,
        SliceMetric.other.is_(False),
        SliceMetric.value == value,
    ]


def _select(table: MetricTable) -> Select[MetricRow]:
    # select() of a union of mapped classes is typed as their common Base; the rows are
    # instances of the one table given.
    return cast("Select[MetricRow]", select(table))


def _gate(table: MetricTable, rule: rules.Rule, min_labeled: int) -> list[ColumnElement[bool]]:
    # rules.evaluable() in SQL, from the same two names of the rule's spec (minus the
    # grace windows, which recent_windows handles): the LIMIT must count only windows
    # the rule is judged on.
    spec = rules.spec_of(rule)
    return [
        column(table, spec.size_field) >= min_labeled,
        column(table, spec.metric).is_not(None),
    ]


def recent_windows(
    *, session: Session, monitor: Monitor, rule: rules.Rule, value: str | None = None
) -> list[MetricRow]:
    """The newest windows rules.evaluate() needs for this monitor, oldest first.

    For a coverage rule that is its grace windows (the newest with predictions, which
    evaluate() skips) and, older than those, the newest for_windows windows it judges.
    `value`: the segment value of a fan-out monitor to read.
    """
    table, where = _source(monitor, value)
    rows: list[MetricRow] = []
    count = rules.lookback(rule, monitor.for_windows)
    grace_windows = rules.spec_of(rule).grace(rule)
    if grace_windows:
        count -= grace_windows  # the lookback counts them; they are read here
        grace = session.scalars(
            _select(table)
            .where(*where, column(table, "predictions") > 0)
            .order_by(desc(table.window_start))
            .limit(grace_windows)
        ).all()
        rows.extend(grace)
        if len(grace) < grace_windows:
            return sorted(rows, key=lambda r: r.window_start)  # all still in grace
        where = [*where, table.window_start < grace[-1].window_start]
    rows.extend(
        session.scalars(
            _select(table)
            .where(*where, *_gate(table, rule, monitor.min_labeled))
            .order_by(desc(table.window_start))
            .limit(count)
        ).all()
    )
    return sorted(rows, key=lambda r: r.window_start)


def reference(
    *, session: Session, monitor: Monitor, rule: rules.Rule, value: str | None = None
) -> rules.Reference | None:
    """The pooled reference period of a rule that has one (its spec says: relative,
    cusum), from the same slice it watches."""
    if not rules.spec_of(rule).uses_reference:
        return None
    start, end = rules.reference_range(cast(rules.ReferencePeriod, rule))
    table, where = _source(monitor, value)
    rows = session.scalars(
        _select(table).where(*where, table.window_start >= start, table.window_start < end)
    ).all()
    return rules.reference_from([point(r) for r in rows])


def fanout_values(*, session: Session, monitor: Monitor, rule: rules.Rule) -> list[str]:
    """The values of a fan-out monitor's segment key that have their own rows in the
    newest windows of that key (as many as the rule looks back over), sorted.

    Fan-out monitors do not pin values: they watch whatever the compute pass
    precomputed, i.e. each window's top N values of the key. Two bounded queries: the
    newest window starts of the key, then the values with own rows since the oldest.
    """
    key = monitor.segment_key
    if key is None:
        return []
    dimension = [
        SliceMetric.model_id == monitor.model_id,
        SliceMetric.kind == SEGMENT,
        SliceMetric.key == key,
        SliceMetric.other.is_(False),
    ]
    count = rules.lookback(rule, monitor.for_windows)
    starts = session.scalars(
        select(SliceMetric.window_start)
        .where(*dimension)
        .distinct()
        .order_by(desc(SliceMetric.window_start))
        .limit(count)
    ).all()
    if not starts:
        return []
    return sorted(
        session.scalars(
            select(SliceMetric.value)
            .where(*dimension, SliceMetric.window_start >= min(starts))
            .distinct()
        )
    )


def point(row: MetricRow) -> rules.WindowPoint:
    return rules.point_of(row.window_start, row)


def window_payload(row: MetricRow) -> dict[str, Any]:
    """The window exactly as GET .../metrics reports it (with ?model_version= or
    ?segment= for a slice): the webhook's and the alert's `window`."""
    return record.alert_payload(history_json.fragment_from_values(record.row_values(row))[1])


def is_pinned(*, session: Session, model_id: str, watched: Slice) -> bool:
    """Does a stored monitor of the model already watch this slice?"""
    # No autoflush: a monitor being created or changed in this session must not count
    # itself, and a pending duplicate name must surface in the caller's 409 check,
    # not as an IntegrityError from this read.
    with session.no_autoflush:
        return watched in pinned_slices(session=session, model_id=model_id)


def recompute_history(*, session: Session, model_id: str) -> int:
    """Mark every computed window of the model dirty; returns how many.

    A slice is precomputed only where its value was among the window's top N or is
    pinned by a monitor. Windows computed before the monitor existed may therefore
    have no row of their own for its value (it hid in `other`), and the monitor would
    have no history to judge, e.g. no reference period and no trend. Recomputing them
    once, now that the slice is pinned, gives it its full history.
    """
    return window_service.recompute_windows(session, model_id)


# Windows judged in one evaluation of one series, at most: after a long outage the
# newest ones (older ones are still part of the judged windows' history).
MAX_JUDGED = 200
# Windows loaded between the oldest judged one and the newest, at most.
_MAX_CONTEXT = 2000


def judge_windows(
    *,
    session: Session,
    monitor: Monitor,
    rule: rules.Rule,
    value: str | None,
    after: int | None,
    changed_since: datetime | None,
) -> tuple[list[MetricRow], list[int]]:
    """The evaluable windows to judge now, in order, and the history they need.

    Judged: every evaluable window newer than ``after`` (the series' last judged
    window) and every evaluable window (re)computed since ``changed_since`` (the last
    evaluation): a window whose late labels arrived after newer ones were judged is
    judged in its place. Returns (rows oldest first, judged window starts ascending);
    the rows hold, before the oldest judged window, the lookback its judgement needs.
    A series never judged before (after is None) judges only its newest window:
    a new monitor does not replay the whole history.
    """
    if after is None or rules.spec_of(rule).has_grace:
        # Grace windows (the coverage rule's) are counted from the newest window, so
        # such a rule is always judged there.
        rows = recent_windows(session=session, monitor=monitor, rule=rule, value=value)
        gated = rules.evaluable([point(r) for r in rows], monitor.min_labeled, rule)
        return rows, ([gated[-1].window_start] if gated else [])
    table, where = _source(monitor, value)
    gate = _gate(table, rule, monitor.min_labeled)
    fresh: ColumnElement[bool] = table.window_start > after
    if changed_since is not None:
        fresh = or_(fresh, table.computed_at >= changed_since)
    judged = sorted(
        session.scalars(
            select(table.window_start)
            .where(*where, *gate, fresh)
            .order_by(desc(table.window_start))
            .limit(MAX_JUDGED)
        )
    )
    if not judged:
        return [], []
    first = judged[0]
    before = session.scalars(
        _select(table)
        .where(*where, *gate, table.window_start < first)
        .order_by(desc(table.window_start))
        .limit(max(0, rules.lookback(rule, monitor.for_windows) - 1))
    ).all()
    since_first = session.scalars(
        _select(table)
        .where(*where, *gate, table.window_start >= first)
        .order_by(desc(table.window_start))
        .limit(_MAX_CONTEXT)
    ).all()
    rows = sorted([*before, *since_first], key=lambda r: r.window_start)
    loaded = {r.window_start for r in since_first}
    return rows, [s for s in judged if s in loaded]


def restart_origin(*, session: Session, monitor: Monitor, segment: str | None) -> int | None:
    """Start of the window that resolved the series' last alert episode (None: none).

    A cusum restarts there, and windows at or before it that are judged late cannot
    open a new episode: they were part of the one already decided."""
    where = [Alert.monitor_id == monitor.id, Alert.state == "resolved"]
    where.append(Alert.segment.is_(None) if segment is None else Alert.segment == segment)
    window = session.scalars(
        select(Alert.resolved_window).where(*where).order_by(desc(Alert.resolved_at)).limit(1)
    ).first()
    start = (window or {}).get("start")
    if not isinstance(start, str):
        return None
    return int(datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp())
