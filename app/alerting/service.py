"""Monitors and the alert lifecycle.

Evaluation is a state machine per monitor (the pure decisions live in rules.py): the
monitor row is locked, its recent windows are read, and any transition writes the alert
row and its webhook outbox row in the same transaction. `needs_eval` is set by the
compute pass in the transaction that writes new windows, so an evaluation is never lost.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, desc, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.alerting import rules, series
from app.alerting.models import Alert, Monitor, MonitorSegmentState
from app.alerting.schemas import MonitorIn, MonitorUpdate
from app.config import Settings
from app.errors import Conflict, Invalid, NotFound, item_error
from app.notify import formats, outbox, secrets, signing, ssrf
from app.notify.models import WebhookDelivery

log = logging.getLogger(__name__)


@dataclass
class EvaluationReport:
    evaluated: int = 0
    fired: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# --- monitors ------------------------------------------------------------------------


def _check_webhook(url: str | None, settings: Settings) -> None:
    if url is None:
        return
    try:
        ssrf.check_url(url, allow_private=settings.webhook_allow_private)
    except ssrf.UnresolvableWebhookURL:
        # Not (yet) in DNS is not an SSRF risk by itself; the send-time check resolves
        # again, refuses private addresses and pins the one it checked.
        log.warning("webhook host does not resolve yet; it is checked again at send time")
        return
    except ssrf.UnsafeWebhookURL as exc:
        raise Invalid([item_error(None, "webhook_url", str(exc))]) from exc


def create_monitor(
    *, session: Session, model_id: str, body: MonitorIn, settings: Settings, now: datetime
) -> tuple[Monitor, str | None]:
    """Returns the monitor and its webhook secret in clear (shown once)."""
    url = str(body.webhook_url) if body.webhook_url else None
    if url is None and body.webhook_format == "pagerduty":
        url = formats.PAGERDUTY_EVENTS_URL
    _check_webhook(url, settings)
    # Only the standard format is signed; the others' receivers verify nothing.
    signed = body.webhook_format == "standard"
    secret = body.webhook_secret or (signing.generate_secret() if url and signed else None)
    cipher = secrets.load_cipher(settings)
    backfill = _needs_backfill(
        session, model_id, None, series.watched_slice(body.model_version, body.segment)
    )
    monitor = Monitor(
        id=new_id("mon"),
        model_id=model_id,
        name=body.name,
        rule=body.rule.model_dump(mode="json"),
        min_labeled=body.min_labeled,
        for_windows=body.for_windows,
        webhook_url=url,
        webhook_secret_enc=secrets.encrypt(cipher, secret) if secret else None,
        webhook_format=body.webhook_format,
        severity=body.severity,
        routing_key_enc=secrets.encrypt(cipher, body.routing_key) if body.routing_key else None,
        webhook_disabled_at=None,
        enabled=body.enabled,
        state="pending",
        current_alert_id=None,
        model_version=body.model_version,
        segment=body.segment,
        segment_key=body.segment_key,
        last_evaluated_window=None,
        needs_eval=True,
        evaluated_at=None,
        created_at=now,
        updated_at=now,
    )
    session.add(monitor)
    _flush_unique(session, model_id, body.name)
    if backfill:
        series.recompute_history(session=session, model_id=model_id)
    return monitor, secret


def _needs_backfill(
    session: Session, model_id: str, before: series.Slice | None, after: series.Slice | None
) -> bool:
    """Must the model's computed windows be recomputed for a monitor now watching
    `after` (see series.recompute_history)? Not when the slice is unchanged, or already
    watched (so pinned and precomputed) by another monitor of the model."""
    if after is None or after == before:
        return False
    return not series.is_pinned(session=session, model_id=model_id, watched=after)


def _slice_update(
    monitor: Monitor, body: MonitorUpdate
) -> tuple[str | None, str | None, str | None]:
    """(model_version, segment, segment_key) after the update: setting one replaces
    what the monitor watches."""
    given = body.model_fields_set
    if body.segment_key is not None:
        return None, None, body.segment_key
    if body.segment is not None:
        return None, body.segment, None
    if body.model_version is not None:
        return body.model_version, None, None
    # Only explicit nulls (or nothing) given: clear what was nulled, keep the rest.
    return (
        None if "model_version" in given else monitor.model_version,
        None if "segment" in given else monitor.segment,
        None if "segment_key" in given else monitor.segment_key,
    )


def _flush_unique(session: Session, model_id: str, name: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"model {model_id!r} already has a monitor named {name!r}") from exc


def get_monitor(*, session: Session, model_id: str, monitor_id: str) -> Monitor:
    monitor = session.get(Monitor, monitor_id)
    if monitor is None or monitor.model_id != model_id:
        raise NotFound(f"monitor {monitor_id!r} not found for model {model_id!r}")
    return monitor


def list_monitors(*, session: Session, model_id: str) -> list[Monitor]:
    return list(
        session.scalars(
            select(Monitor).where(Monitor.model_id == model_id).order_by(Monitor.created_at)
        )
    )


def update_monitor(
    *, session: Session, monitor: Monitor, body: MonitorUpdate, settings: Settings, now: datetime
) -> Monitor:
    given = body.model_fields_set
    if "webhook_url" in given:
        url = str(body.webhook_url) if body.webhook_url else None
        _check_webhook(url, settings)
        if url != monitor.webhook_url:
            monitor.webhook_url = url
            monitor.webhook_disabled_at = None  # a new URL re-enables delivery
    if "webhook_secret" in given and body.webhook_secret:
        monitor.webhook_secret_enc = secrets.encrypt(
            secrets.load_cipher(settings), body.webhook_secret
        )
    if "routing_key" in given and body.routing_key:
        monitor.routing_key_enc = secrets.encrypt(secrets.load_cipher(settings), body.routing_key)
    if "webhook_format" in given and body.webhook_format is not None:
        monitor.webhook_format = body.webhook_format
    if "severity" in given and body.severity is not None:
        monitor.severity = body.severity
    if monitor.webhook_format == "pagerduty" and monitor.routing_key_enc is None:
        raise Invalid(
            [
                item_error(
                    None, "routing_key", "routing_key is required with webhook_format pagerduty"
                )
            ]
        )
    if (
        monitor.webhook_format == "standard"
        and monitor.webhook_url
        and not monitor.webhook_secret_enc
    ):
        # Switched to the signed format: it needs a secret (returned by GET never; set
        # webhook_secret to choose it).
        monitor.webhook_secret_enc = secrets.encrypt(
            secrets.load_cipher(settings), signing.generate_secret()
        )
    if "name" in given and body.name:
        monitor.name = body.name
    if "rule" in given and body.rule is not None:
        monitor.rule = body.rule.model_dump(mode="json")
    for name in ("min_labeled", "for_windows", "enabled"):
        if name in given and getattr(body, name) is not None:
            setattr(monitor, name, getattr(body, name))
    version, segment, segment_key = _slice_update(monitor, body)
    before = series.watched_slice(monitor.model_version, monitor.segment)
    after = series.watched_slice(version, segment)
    backfill = _needs_backfill(session, monitor.model_id, before, after)
    # Into, out of, or between fan-outs: the open episodes were about other series.
    fanout_changed = segment_key != monitor.segment_key
    monitor.model_version, monitor.segment = version, segment
    monitor.segment_key = segment_key
    monitor.needs_eval = True
    # A changed monitor is judged afresh on its newest window, not on every window
    # since it was last judged under its old definition.
    monitor.last_evaluated_window = None
    session.execute(
        update(MonitorSegmentState)
        .where(MonitorSegmentState.monitor_id == monitor.id)
        .values(last_evaluated_window=None)
        .execution_options(synchronize_session=False)
    )
    monitor.updated_at = now
    _flush_unique(session, monitor.model_id, monitor.name)
    if fanout_changed:  # after the 409 check: closing flushes
        _close_episodes(session, monitor, now)
    if backfill:
        series.recompute_history(session=session, model_id=monitor.model_id)
    return monitor


def _close_episodes(session: Session, monitor: Monitor, now: datetime) -> None:
    """Resolve the monitor's open alerts (without a resolving window) and forget its
    per-value states: it is about to judge different series, which can neither
    continue nor recover those episodes. Receivers get alert.resolved for each."""
    open_alerts = session.scalars(
        select(Alert)
        .where(Alert.monitor_id == monitor.id, Alert.state == "firing")
        .order_by(Alert.started_at, Alert.id)
    ).all()
    for alert in open_alerts:
        alert.state = "resolved"
        alert.resolved_at = now
        session.flush()
        _notify(session, monitor, alert, "alert.resolved", now)
    session.execute(delete(MonitorSegmentState).where(MonitorSegmentState.monitor_id == monitor.id))
    monitor.state = "pending"
    monitor.current_alert_id = None
    monitor.last_evaluated_window = None


def delete_monitor(*, session: Session, monitor: Monitor) -> None:
    session.delete(monitor)
    session.flush()


def mark_models_changed(
    *, session: Session, model_ids: Iterable[str], computed_at: datetime
) -> None:
    """Called in the transaction that writes new windows, stamped `computed_at`.

    An evaluation judges the windows computed since its previous one (`evaluated_at`,
    series.judge_windows). One that ran after these windows were stamped but before this
    transaction committed did not see them, yet its `evaluated_at` is later than their
    stamp, so the next evaluation would skip them (seen: a monitor left "ok" on a
    recomputed bad window, two workers). This UPDATE waits for such an evaluation's row
    lock, then pulls its `evaluated_at` back to the stamp, so they are judged."""
    ids = sorted(set(model_ids))
    if ids:
        stamp = literal(computed_at, type_=Monitor.evaluated_at.type)  # UTC on SQLite too
        session.execute(
            update(Monitor)
            .where(Monitor.model_id.in_(ids), Monitor.enabled.is_(True))
            .values(
                needs_eval=True,
                evaluated_at=case(
                    (Monitor.evaluated_at > stamp, stamp), else_=Monitor.evaluated_at
                ),
            )
        )


# --- evaluation ----------------------------------------------------------------------


def _payload(kind: str, alert: Alert, window: dict[str, Any]) -> dict[str, Any]:
    def iso(ts: datetime | None) -> str | None:
        return ts.isoformat().replace("+00:00", "Z") if ts else None

    payload: dict[str, Any] = {
        "type": kind,
        "alert_id": alert.id,
        "model_id": alert.model_id,
        "monitor": alert.monitor_snapshot,
        "started_at": iso(alert.started_at),
        "resolved_at": iso(alert.resolved_at),
        "window": window,
    }
    if alert.segment is not None:
        payload["segment"] = alert.segment  # the value of a fan-out monitor that fired
    return payload


def _notify(session: Session, monitor: Monitor, alert: Alert, kind: str, now: datetime) -> None:
    if not monitor.webhook_url or monitor.webhook_disabled_at is not None:
        return
    window = alert.resolved_window if kind == "alert.resolved" else alert.window
    fmt = monitor.webhook_format
    if kind == "alert.resolved":
        # An Alertmanager re-post still queued must not re-open the alert after its end.
        outbox.cancel_pending(
            session=session, alert_id=alert.id, event_type=formats.RESEND_EVENT, reason=kind
        )
    outbox.enqueue(
        session=session,
        alert_id=alert.id,
        monitor_id=monitor.id,
        event_type=kind,
        payload=formats.render(fmt, _payload(kind, alert, window or {}), severity=monitor.severity),
        url=formats.target_url(fmt, monitor.webhook_url),
        secret_enc=_delivery_secret(monitor),
        now=now,
        fmt=fmt,
    )


def _delivery_secret(monitor: Monitor) -> str | None:
    """What the sender needs, encrypted: the signing secret (standard) or the routing key
    (pagerduty); Slack and Alertmanager posts carry no credential."""
    if monitor.webhook_format == "pagerduty":
        return monitor.routing_key_enc
    if monitor.webhook_format == "standard":
        return monitor.webhook_secret_enc
    return None


def _snapshot(monitor: Monitor) -> dict[str, Any]:
    # The monitor as it fired (payload `monitor`): a later rename or slice change must
    # not rewrite what the alert was about.
    return {
        "id": monitor.id,
        "name": monitor.name,
        "rule": monitor.rule,
        "model_version": monitor.model_version,
        "segment": monitor.segment,
        "segment_key": monitor.segment_key,
    }


def _judge_series(
    session: Session,
    monitor: Monitor,
    rule: rules.Rule,
    *,
    value: str | None,
    segment: str | None,
    state: str,
    alert_id: str | None,
    after: int | None,
    now: datetime,
) -> tuple[str, str | None, int | None]:
    """Judge every window of one series that became evaluable since its last
    evaluation, oldest first, each on the history up to it, applying each transition
    with that window. Returns the series' (state, current_alert_id, last judged window).

    Windows judged late (older than ``after``, the newest already judged; their labels
    came after newer windows') may open an episode but not resolve one: whether the
    series has recovered is decided by its newest window, which is judged again after
    them. A late window at or before the window that resolved the series' last episode
    opens nothing: that stretch was already decided.
    """
    rows, judged = series.judge_windows(
        session=session,
        monitor=monitor,
        rule=rule,
        value=value,
        after=after,
        changed_since=monitor.evaluated_at,
    )
    if not judged:
        if state == "pending":
            state = "no_data"
        return state, alert_id, after
    points = [series.point(r) for r in rows]
    by_start = {r.window_start: r for r in rows}
    position = {p.window_start: i for i, p in enumerate(points)}
    newest = max(after or judged[-1], judged[-1])
    if judged[-1] < newest and newest in position:
        judged.append(newest)  # late windows judged: the newest decides recovery
    reference = series.reference(session=session, monitor=monitor, rule=rule, value=value)
    origin = series.restart_origin(session=session, monitor=monitor, segment=segment)
    need = rules.lookback(rule, monitor.for_windows)
    for start in judged:
        i = position[start]
        # A rule with grace windows (coverage) is always judged at the newest window
        # (they are counted back from there): it gets them all.
        with_grace = rules.spec_of(rule).has_grace
        verdict = rules.evaluate(
            rule,
            points if with_grace else points[max(0, i + 1 - need) : i + 1],
            for_windows=monitor.for_windows,
            min_labeled=monitor.min_labeled,
            reference=reference,
            origin=origin,
        )
        late = after is not None and start < after
        if late and (state == "firing" or (origin is not None and start <= origin)):
            continue
        before = state
        state, alert_id = _step(
            session,
            monitor,
            verdict,
            by_start,
            state=state,
            alert_id=alert_id,
            segment=segment,
            now=now,
        )
        if before == "firing" and state != "firing":
            origin = start  # a cusum restarts at the window that resolved the episode
    return state, alert_id, newest


def _step(
    session: Session,
    monitor: Monitor,
    verdict: rules.Verdict,
    by_start: dict[int, series.MetricRow],
    *,
    state: str,
    alert_id: str | None,
    segment: str | None,
    now: datetime,
) -> tuple[str, str | None]:
    """Apply one series' transition (alert row and outbox row); returns its new
    (state, current_alert_id). `segment`: the key:value of a fan-out series."""
    action = rules.transition(state == "firing", verdict)
    last = by_start[verdict.last.window_start] if verdict.last else None
    if action == "fire" and last is not None:
        alert = Alert(
            id=new_id("alert"),
            monitor_id=monitor.id,
            model_id=monitor.model_id,
            state="firing",
            started_at=now,
            resolved_at=None,
            window_start=last.window_start,
            window=series.window_payload(last),
            resolved_window=None,
            monitor_snapshot=_snapshot(monitor),
            segment=segment,
        )
        session.add(alert)
        session.flush()
        _notify(session, monitor, alert, "alert.firing", now)
        log.info(
            "alert %s firing: monitor %s model %s%s",
            alert.id,
            monitor.id,
            monitor.model_id,
            f" segment {segment}" if segment else "",
        )
        return "firing", alert.id
    if action == "resolve" and last is not None:
        alert_or_none = session.get(Alert, alert_id) if alert_id else None
        if alert_or_none is not None:
            alert_or_none.state = "resolved"
            alert_or_none.resolved_at = now
            alert_or_none.resolved_window = series.window_payload(last)
            session.flush()
            _notify(session, monitor, alert_or_none, "alert.resolved", now)
            log.info("alert %s resolved: monitor %s", alert_or_none.id, monitor.id)
        return "ok", None
    if state != "firing":
        return ("no_data" if verdict.last is None else "ok"), alert_id
    return state, alert_id


def evaluate_monitor(*, session: Session, monitor: Monitor, now: datetime) -> None:
    """Evaluate one (locked) monitor; write any transition with its outbox row."""
    rule = rules.parse_rule(monitor.rule)
    if monitor.segment_key is not None:
        _evaluate_fanout(session, monitor, rule, now)
    else:
        monitor.state, monitor.current_alert_id, monitor.last_evaluated_window = _judge_series(
            session,
            monitor,
            rule,
            value=None,
            segment=None,
            state=monitor.state,
            alert_id=monitor.current_alert_id,
            after=monitor.last_evaluated_window,
            now=now,
        )
    monitor.needs_eval = False
    monitor.evaluated_at = now
    session.flush()


def _evaluate_fanout(session: Session, monitor: Monitor, rule: rules.Rule, now: datetime) -> None:
    """One series per value of the monitor's segment key, each with its own state row
    and its own alert episodes. Judged: the values with own rows in the key's newest
    windows, and every still-firing value (silence is not recovery, but a corrected
    window of it may be). The monitor's own state summarises them."""
    key = monitor.segment_key
    assert key is not None
    states = {
        s.value: s
        for s in session.scalars(
            select(MonitorSegmentState).where(MonitorSegmentState.monitor_id == monitor.id)
        )
    }
    values = set(series.fanout_values(session=session, monitor=monitor, rule=rule))
    values |= {v for v, s in states.items() if s.state == "firing"}
    newest_firing: tuple[int, str] | None = None
    for value in sorted(values):
        row = states.get(value)
        if row is None:
            row = MonitorSegmentState(
                monitor_id=monitor.id,
                value=value,
                state="pending",
                current_alert_id=None,
                last_evaluated_window=None,
            )
            session.add(row)
            states[value] = row
        row.state, row.current_alert_id, row.last_evaluated_window = _judge_series(
            session,
            monitor,
            rule,
            value=value,
            segment=f"{key}:{value}",
            state=row.state,
            alert_id=row.current_alert_id,
            after=row.last_evaluated_window,
            now=now,
        )
    for row in states.values():
        if row.state == "firing" and row.current_alert_id is not None:
            alert = session.get(Alert, row.current_alert_id)
            started = alert.started_at.timestamp() if alert else 0.0
            candidate = (int(started * 1e6), row.current_alert_id)
            if newest_firing is None or candidate > newest_firing:
                newest_firing = candidate
    evaluated = [r.last_evaluated_window for r in states.values() if r.state != "no_data"]
    known = [w for w in evaluated if w is not None]
    if newest_firing is not None:
        monitor.state = "firing"
    else:
        monitor.state = "ok" if known else "no_data"
    # The most recently fired of its open alerts (the others: GET /v1/alerts?monitor_id=).
    monitor.current_alert_id = newest_firing[1] if newest_firing else None
    monitor.last_evaluated_window = max(known) if known else None


def evaluate_pending(*, session: Session, now: datetime, limit: int = 100) -> EvaluationReport:
    """Evaluate the monitors flagged needs_eval. Concurrent evaluators skip each
    other's locked monitors (PostgreSQL SKIP LOCKED); SQLite serialises them."""
    report = EvaluationReport()
    monitors = session.scalars(
        select(Monitor)
        .where(Monitor.needs_eval.is_(True), Monitor.enabled.is_(True))
        .order_by(Monitor.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    for monitor in monitors:
        before = monitor.state
        evaluate_monitor(session=session, monitor=monitor, now=now)
        report.evaluated += 1
        if monitor.state == "firing" and before != "firing":
            report.fired.append(monitor.id)
        elif before == "firing" and monitor.state != "firing":
            report.resolved.append(monitor.id)
    return report


# --- alerts --------------------------------------------------------------------------


def list_alerts(
    *,
    session: Session,
    model_id: str | None,
    state: str | None,
    monitor_id: str | None,
    limit: int,
) -> list[Alert]:
    stmt = select(Alert)
    if model_id:
        stmt = stmt.where(Alert.model_id == model_id)
    if state:
        stmt = stmt.where(Alert.state == state)
    if monitor_id:
        stmt = stmt.where(Alert.monitor_id == monitor_id)
    return list(session.scalars(stmt.order_by(desc(Alert.started_at)).limit(limit)))


def get_alert(*, session: Session, alert_id: str) -> tuple[Alert, list[WebhookDelivery]]:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"alert {alert_id!r} not found")
    deliveries = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.alert_id == alert_id)
        .order_by(WebhookDelivery.created_at)
    ).all()
    return alert, list(deliveries)
