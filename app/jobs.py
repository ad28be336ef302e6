"""The scheduler's jobs, as plain functions (APScheduler, `lossmon compute` and tests
call the same code). Each job owns its transactions; services only flush."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from app.alerting import resend, watched
from app.alerting import service as alerting_service
from app.config import Settings
from app.db import session_scope
from app.notify import delivery
from app.retention import service as retention_service
from app.windows import service as window_service

log = logging.getLogger(__name__)

EVALUATION_BATCH = 100


@dataclass
class TickReport:
    compute: window_service.PassResult
    evaluation: alerting_service.EvaluationReport = field(
        default_factory=alerting_service.EvaluationReport
    )
    delivery: delivery.DeliveryReport | None = None
    retention: retention_service.RetentionReport = field(
        default_factory=retention_service.RetentionReport
    )


def _mark_monitors(session: Session, model_ids: set[str], computed_at: datetime) -> None:
    alerting_service.mark_models_changed(
        session=session, model_ids=model_ids, computed_at=computed_at
    )


def evaluate_monitors(
    *, factory: sessionmaker[Session], clock: Callable[[], float] = time.time
) -> alerting_service.EvaluationReport:
    """Evaluate every monitor flagged since its last evaluation."""
    total = alerting_service.EvaluationReport()
    while True:
        with session_scope(factory) as session:
            report = alerting_service.evaluate_pending(
                session=session,
                now=datetime.fromtimestamp(clock(), UTC),
                limit=EVALUATION_BATCH,
            )
        total.evaluated += report.evaluated
        total.fired += report.fired
        total.resolved += report.resolved
        if report.evaluated < EVALUATION_BATCH:
            return total


def compute_and_evaluate(
    *,
    settings: Settings,
    factory: sessionmaker[Session],
    read_factory: sessionmaker[Session],
    clock: Callable[[], float] = time.time,
) -> TickReport:
    result = window_service.compute_pass(
        factory=factory,
        read_factory=read_factory,
        settings=settings,
        clock=clock,
        on_written=_mark_monitors,
        pinned_slices=watched.pinned_slices,
    )
    evaluation = evaluate_monitors(factory=factory, clock=clock)
    # After the compute pass (API.md): windows about to expire got their last compute.
    retention = retention_service.run_retention(factory=factory, clock=clock)
    return TickReport(compute=result, evaluation=evaluation, retention=retention)


def compute_now(
    *,
    settings: Settings,
    factory: sessionmaker[Session],
    read_factory: sessionmaker[Session],
    max_wait_s: float,
    progress: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.time,
) -> TickReport:
    """`lossmon compute`: a tick whose compute step returns only once every window
    dirty at its start is computed (bounded by max_wait_s), then monitors, retention
    and webhooks."""
    result = window_service.compute_until_done(
        factory=factory,
        read_factory=read_factory,
        settings=settings,
        max_wait_s=max_wait_s,
        clock=clock,
        on_written=_mark_monitors,
        progress=progress,
        pinned_slices=watched.pinned_slices,
    )
    evaluation = evaluate_monitors(factory=factory, clock=clock)
    retention = retention_service.run_retention(factory=factory, clock=clock)
    report = TickReport(compute=result, evaluation=evaluation, retention=retention)
    report.delivery = deliver_webhooks(settings=settings, factory=factory, clock=clock)
    return report


def deliver_webhooks(
    *, settings: Settings, factory: sessionmaker[Session], clock: Callable[[], float] = time.time
) -> delivery.DeliveryReport:
    with session_scope(factory) as session:
        resend.resend_firing(
            session=session,
            resend_s=settings.alertmanager_resend_s,
            now=datetime.fromtimestamp(clock(), UTC),
        )
    return delivery.deliver_due(
        factory=factory, settings=settings, clock=clock, owner=watched.MONITOR_WEBHOOKS
    )


def tick(
    *,
    settings: Settings,
    factory: sessionmaker[Session],
    read_factory: sessionmaker[Session],
    clock: Callable[[], float] = time.time,
) -> TickReport:
    """One full tick: compute dirty windows, evaluate monitors, send due webhooks."""
    report = compute_and_evaluate(
        settings=settings, factory=factory, read_factory=read_factory, clock=clock
    )
    report.delivery = deliver_webhooks(settings=settings, factory=factory, clock=clock)
    return report
