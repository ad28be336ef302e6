"""The delivery job: drain the webhook outbox, at least once, one sender at a time.

Per batch:
1. One short transaction claims due rows (FOR UPDATE SKIP LOCKED on PostgreSQL; the
   BEGIN IMMEDIATE transaction serialises claimers on SQLite) and, before anything is
   sent, counts the attempt and schedules the next one. That schedule is the lease: no
   other worker takes the row while it is in flight, and if we crash mid-send the row
   simply comes due again (at-least-once; receivers dedupe on webhook-id).
2. Each row is POSTed outside any transaction, so a slow receiver holds no locks.
3. A short transaction per row records the outcome.

This module is a job runner: it owns its transactions (session_scope).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import httpx
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.notify.backoff import next_delay
from app.notify.models import WebhookDelivery
from app.notify.outbox import from_us, to_us
from app.notify.sending import AttemptResult, SecretCache, send

log = logging.getLogger(__name__)

MAX_BATCHES = 10
MAX_ERROR_CHARS = 500


@dataclass
class DeliveryReport:
    """One pass. sent = delivered + retried + failed + dead-after-send (+ stale outcomes)."""

    sent: int = 0  # HTTP attempts made (including ones that got no response)
    delivered: int = 0
    retried: int = 0  # rescheduled for another attempt
    failed: int = 0  # given up because the receiver refused: 3xx/4xx, 410, unsafe URL
    dead: int = 0  # given up because retries ran out (attempts or age)


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    id: str
    alert_id: str
    monitor_id: str
    url: str
    body: str
    secret_enc: str | None
    format: str
    attempts: int  # including the attempt this claim is for
    created_at: datetime
    lease_until_us: int  # the next_attempt_us written by the claim


@dataclass(frozen=True, slots=True)
class ClaimResult:
    deliveries: list[ClaimedDelivery]
    expired: int  # due rows given up at claim time instead of sent
    found: int  # due rows seen (both of the above)


class WebhookOwner(Protocol):
    """Who owns a delivery's webhook URL (alerting: the monitor), told when the
    receiver answers 410 Gone. Passed in rather than imported: notify sits below
    alerting and must not import it back."""

    def lock(self, session: Session, monitor_id: str) -> None:
        """Lock the owner's row before any delivery row (a fixed lock order, so two
        410s for one monitor queue instead of deadlocking)."""

    def disable(self, session: Session, monitor_id: str, url: str, now: datetime) -> None:
        """Stop sending to `url` (only if the owner still points at it)."""


def deliver_due(
    *,
    factory: sessionmaker[Session],
    settings: Settings,
    client: httpx.Client | None = None,
    clock: Callable[[], float] = time.time,
    rng: random.Random | None = None,
    limit: int = 50,
    owner: WebhookOwner | None = None,
) -> DeliveryReport:
    """Send every due delivery (up to MAX_BATCHES batches of `limit`).

    `owner` hears of 410 Gone answers (None: only the deliveries are cancelled)."""
    rng = rng if rng is not None else random.Random()
    report = DeliveryReport()
    # No proxies from the environment: a proxy would resolve the host itself and
    # defeat the address pinning of the SSRF guard.
    http = client if client is not None else httpx.Client(trust_env=False)
    secrets = SecretCache(settings)
    try:
        for _ in range(MAX_BATCHES):
            with session_scope(factory) as session:
                claim = claim_due(
                    session=session,
                    settings=settings,
                    now_us=_now_us(clock),
                    rng=rng,
                    limit=limit,
                )
            report.dead += claim.expired
            for delivery in claim.deliveries:
                _attempt(factory, settings, http, secrets, delivery, clock, rng, report, owner)
            if claim.found < limit:
                break
    finally:
        if client is None:
            http.close()
    return report


def claim_due(
    *, session: Session, settings: Settings, now_us: int, rng: random.Random, limit: int
) -> ClaimResult:
    """Claim up to `limit` due rows; flush only (the caller commits before sending).

    Rows that already used their last attempt, or are older than the maximum age,
    are given up here instead. That covers a crash during the final attempt.
    """
    now = from_us(now_us)
    rows = session.execute(
        select(
            WebhookDelivery.id,
            WebhookDelivery.alert_id,
            WebhookDelivery.monitor_id,
            WebhookDelivery.url,
            WebhookDelivery.body,
            WebhookDelivery.secret_enc,
            WebhookDelivery.format,
            WebhookDelivery.attempts,
            WebhookDelivery.created_at,
        )
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_us <= now_us)
        .order_by(WebhookDelivery.next_attempt_us, WebhookDelivery.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    claimed: list[ClaimedDelivery] = []
    leases: list[dict[str, object]] = []
    expired: list[dict[str, object]] = []
    for row in rows:
        age_s = (now - row.created_at).total_seconds()
        if row.attempts >= settings.webhook_max_attempts or age_s > settings.webhook_max_age_s:
            why = (
                f"gave up after {row.attempts} attempts (outcome of the last one unknown)"
                if row.attempts >= settings.webhook_max_attempts
                else f"gave up: older than {settings.webhook_max_age_s:g}s"
            )
            expired.append({"id": row.id, "status": "dead", "last_error": why})
            continue
        attempts = row.attempts + 1
        # Rows of a batch are sent one after another, so the k-th may only start after
        # k-1 earlier sends; its lease allows for them, or another worker could take it
        # over while it is still waiting its turn here.
        budget_s = (len(claimed) + 1) * settings.webhook_timeout_s
        delay_s = next_delay(
            attempts,
            base_s=settings.webhook_backoff_base_s,
            max_s=settings.webhook_backoff_max_s,
            rng=rng,
        )
        lease_us = now_us + int((budget_s + delay_s) * 1_000_000)
        leases.append(
            {
                "id": row.id,
                "attempts": attempts,
                "next_attempt_us": lease_us,
                "last_attempt_at": now,
            }
        )
        claimed.append(
            ClaimedDelivery(
                id=row.id,
                alert_id=row.alert_id,
                monitor_id=row.monitor_id,
                url=row.url,
                body=row.body,
                secret_enc=row.secret_enc,
                format=row.format,
                attempts=attempts,
                created_at=row.created_at,
                lease_until_us=lease_us,
            )
        )
    # ORM bulk UPDATE by primary key: one executemany, not a statement per row.
    if leases:
        session.execute(update(WebhookDelivery), leases)
    if expired:
        session.execute(update(WebhookDelivery), expired)
        for e in expired:
            log.warning("webhook delivery %s: %s", e["id"], e["last_error"])
    return ClaimResult(claimed, len(expired), len(rows))


def _attempt(
    factory: sessionmaker[Session],
    settings: Settings,
    http: httpx.Client,
    secrets: SecretCache,
    delivery: ClaimedDelivery,
    clock: Callable[[], float],
    rng: random.Random,
    report: DeliveryReport,
    owner: WebhookOwner | None,
) -> None:
    now_us = _now_us(clock)
    if now_us >= delivery.lease_until_us:
        # Earlier sends of this batch were slower than the lease allowed: another
        # worker may own the row now, so do not send; hand the attempt back instead.
        _release(factory, delivery, now_us)
        log.warning("webhook delivery %s: lease expired before sending; released", delivery.id)
        return
    result = send(http, settings, secrets, delivery, from_us(now_us))
    report.sent += 1
    label = _record(factory, settings, delivery, result, _now_us(clock), rng, owner)
    if label == "delivered":
        report.delivered += 1
    elif label == "retry":
        report.retried += 1
    elif label == "failed":
        report.failed += 1
    elif label == "dead":
        report.dead += 1
    log.log(
        logging.INFO if label == "delivered" else logging.WARNING,
        "webhook delivery %s alert %s attempt %d: status %s -> %s%s",
        delivery.id,
        delivery.alert_id,
        delivery.attempts,
        result.status_code if result.status_code is not None else "-",
        label,
        f" ({result.error})" if result.error else "",
    )


def _record(
    factory: sessionmaker[Session],
    settings: Settings,
    delivery: ClaimedDelivery,
    result: AttemptResult,
    now_us: int,
    rng: random.Random,
    owner: WebhookOwner | None,
) -> str:
    """Store one attempt's outcome; returns the report label (or "stale")."""
    now = from_us(now_us)
    with session_scope(factory) as session:
        if result.outcome == "gone" and owner is not None:
            owner.lock(session, delivery.monitor_id)
        row = session.get(WebhookDelivery, delivery.id, with_for_update=True)
        if (
            row is None
            or row.status != "pending"
            # Our lease ran out and another worker attempted again: its result wins,
            # except that a success is always worth recording.
            or (result.outcome != "delivered" and row.attempts != delivery.attempts)
        ):
            return "stale"
        row.last_status_code = result.status_code
        row.last_error = _truncate(result.error)
        label: str
        if result.outcome == "delivered":
            row.status = "delivered"
            row.delivered_at = now
            label = "delivered"
        elif result.outcome == "retry":
            delay_s = next_delay(
                row.attempts,
                base_s=settings.webhook_backoff_base_s,
                max_s=settings.webhook_backoff_max_s,
                rng=rng,
            )
            if result.retry_after_s is not None:
                delay_s = max(delay_s, result.retry_after_s)
            next_us = now_us + int(delay_s * 1_000_000)
            deadline_us = to_us(row.created_at) + int(settings.webhook_max_age_s * 1_000_000)
            if row.attempts >= settings.webhook_max_attempts:
                row.status = "dead"
                row.last_error = _truncate(
                    f"gave up after {row.attempts} attempts: {row.last_error}"
                )
                label = "dead"
            elif next_us > deadline_us:
                # Also when Retry-After asks for more time than the delivery has left.
                row.status = "dead"
                row.last_error = _truncate(
                    f"gave up: next attempt would be past the maximum age "
                    f"({settings.webhook_max_age_s:g}s): {row.last_error}"
                )
                label = "dead"
            else:
                row.next_attempt_us = next_us
                label = "retry"
        elif result.outcome == "fail":
            row.status = "dead"
            label = "failed"
        else:  # gone
            row.status = "dead"
            label = "failed"
            if owner is not None:
                owner.disable(session, row.monitor_id, row.url, now)
            session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.monitor_id == row.monitor_id,
                    WebhookDelivery.url == row.url,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.id != row.id,
                )
                .values(
                    status="cancelled",
                    last_error=f"cancelled: the receiver answered 410 Gone to {row.id}",
                )
                .execution_options(synchronize_session=False)
            )
        session.flush()
    return label


def _release(factory: sessionmaker[Session], delivery: ClaimedDelivery, now_us: int) -> None:
    with session_scope(factory) as session:
        session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery.id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.attempts == delivery.attempts,  # nobody re-claimed it
            )
            .values(attempts=WebhookDelivery.attempts - 1, next_attempt_us=now_us)
            .execution_options(synchronize_session=False)
        )


def _truncate(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_ERROR_CHARS:
        return text
    return text[: MAX_ERROR_CHARS - 1] + "…"


def _now_us(clock: Callable[[], float]) -> int:
    # Via datetime, so it rounds exactly as datetime.fromtimestamp(clock()) does:
    # int(t * 1e6) can land 1 µs before a row enqueued "now" from the same clock.
    return to_us(datetime.fromtimestamp(clock(), UTC))
