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

from sqlalchemy import desc, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.alerting import rules, series
from app.alerting.models import Alert, Monitor
from app.alerting.schemas import MonitorIn, MonitorUpdate
from app.api.errors import ApiError
from app.config import Settings
from app.notify import outbox, secrets, signing, ssrf
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
        raise ApiError(422, [{"index": None, "field": "webhook_url", "message": str(exc)}]) from exc


def create_monitor(
    *, session: Session, model_id: str, body: MonitorIn, settings: Settings, now: datetime
) -> tuple[Monitor, str | None]:
    """Returns the monitor and its webhook secret in clear (shown once)."""
    url = str(body.webhook_url) if body.webhook_url else None
    _check_webhook(url, settings)
    secret = body.webhook_secret or (signing.generate_secret() if url else None)
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
        webhook_disabled_at=None,
        enabled=body.enabled,
        state="pending",
        current_alert_id=None,
        model_version=body.model_version,
        segment=body.segment,
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


def _slice_update(monitor: Monitor, body: MonitorUpdate) -> tuple[str | None, str | None]:
    """(model_version, segment) after the update: setting one replaces the slice."""
    given = body.model_fields_set
    if body.segment is not None:
        return None, body.segment
    if body.model_version is not None:
        return body.model_version, None
    # Only explicit nulls (or nothing) given: clear what was nulled, keep the rest.
    return (
        None if "model_version" in given else monitor.model_version,
        None if "segment" in given else monitor.segment,
    )


def _flush_unique(session: Session, model_id: str, name: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as exc:
        raise ApiError(409, f"model {model_id!r} already has a monitor named {name!r}") from exc


def get_monitor(*, session: Session, model_id: str, monitor_id: str) -> Monitor:
    monitor = session.get(Monitor, monitor_id)
    if monitor is None or monitor.model_id != model_id:
        raise ApiError(404, f"monitor {monitor_id!r} not found for model {model_id!r}")
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
    if "name" in given and body.name:
        monitor.name = body.name
    if "rule" in given and body.rule is not None:
        monitor.rule = body.rule.model_dump(mode="json")
    for name in ("min_labeled", "for_windows", "enabled"):
        if name in given and getattr(body, name) is not None:
            setattr(monitor, name, getattr(body, name))
    version, segment = _slice_update(monitor, body)
    before = series.watched_slice(monitor.model_version, monitor.segment)
    after = series.watched_slice(version, segment)
    backfill = _needs_backfill(session, monitor.model_id, before, after)
    monitor.model_version, monitor.segment = version, segment
    monitor.needs_eval = True
    monitor.updated_at = now
    _flush_unique(session, monitor.model_id, monitor.name)
    if backfill:
        series.recompute_history(session=session, model_id=monitor.model_id)
    return monitor


def delete_monitor(*, session: Session, monitor: Monitor) -> None:
    session.delete(monitor)
    session.flush()


def mark_models_changed(*, session: Session, model_ids: Iterable[str]) -> None:
    """Called by the compute pass in the transaction that writes new windows."""
    ids = sorted(set(model_ids))
    if ids:
        session.execute(
            update(Monitor)
            .where(Monitor.model_id.in_(ids), Monitor.enabled.is_(True))
            .values(needs_eval=True)
        )


# --- evaluation ----------------------------------------------------------------------


def _payload(kind: str, alert: Alert, window: dict[str, Any]) -> dict[str, Any]:
    def iso(ts: datetime | None) -> str | None:
        return ts.isoformat().replace("+00:00", "Z") if ts else None

    return {
        "type": kind,
        "alert_id": alert.id,
        "model_id": alert.model_id,
        "monitor": alert.monitor_snapshot,
        "started_at": iso(alert.started_at),
        "resolved_at": iso(alert.resolved_at),
        "window": window,
    }


def _notify(session: Session, monitor: Monitor, alert: Alert, kind: str, now: datetime) -> None:
    if not monitor.webhook_url or monitor.webhook_disabled_at is not None:
        return
    window = alert.resolved_window if kind == "alert.resolved" else alert.window
    outbox.enqueue(
        session=session,
        alert_id=alert.id,
        monitor_id=monitor.id,
        event_type=kind,
        payload=_payload(kind, alert, window or {}),
        url=monitor.webhook_url,
        secret_enc=monitor.webhook_secret_enc,
        now=now,
    )


def _snapshot(monitor: Monitor) -> dict[str, Any]:
    # The monitor as it fired (payload `monitor`): a later rename or slice change must
    # not rewrite what the alert was about.
    return {
        "id": monitor.id,
        "name": monitor.name,
        "rule": monitor.rule,
        "model_version": monitor.model_version,
        "segment": monitor.segment,
    }


def evaluate_monitor(*, session: Session, monitor: Monitor, now: datetime) -> rules.Verdict:
    """Evaluate one (locked) monitor; write any transition with its outbox row."""
    rule = rules.parse_rule(monitor.rule)
    rows = series.recent_windows(session=session, monitor=monitor, rule=rule)
    by_start = {r.window_start: r for r in rows}
    verdict = rules.evaluate(
        rule,
        [series.point(r) for r in rows],
        for_windows=monitor.for_windows,
        min_labeled=monitor.min_labeled,
        reference=series.reference(session=session, monitor=monitor, rule=rule),
    )
    action = rules.transition(monitor.state == "firing", verdict)
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
        )
        session.add(alert)
        session.flush()
        monitor.state = "firing"
        monitor.current_alert_id = alert.id
        _notify(session, monitor, alert, "alert.firing", now)
        log.info("alert %s firing: monitor %s model %s", alert.id, monitor.id, monitor.model_id)
    elif action == "resolve" and last is not None:
        alert_or_none = (
            session.get(Alert, monitor.current_alert_id) if monitor.current_alert_id else None
        )
        monitor.state = "ok"
        monitor.current_alert_id = None
        if alert_or_none is not None:
            alert_or_none.state = "resolved"
            alert_or_none.resolved_at = now
            alert_or_none.resolved_window = series.window_payload(last)
            session.flush()
            _notify(session, monitor, alert_or_none, "alert.resolved", now)
            log.info("alert %s resolved: monitor %s", alert_or_none.id, monitor.id)
    elif monitor.state != "firing":
        monitor.state = "no_data" if verdict.last is None else "ok"
    monitor.last_evaluated_window = verdict.last.window_start if verdict.last else None
    monitor.needs_eval = False
    monitor.evaluated_at = now
    session.flush()
    return verdict


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
        raise ApiError(404, f"alert {alert_id!r} not found")
    deliveries = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.alert_id == alert_id)
        .order_by(WebhookDelivery.created_at)
    ).all()
    return alert, list(deliveries)
