"""APScheduler wiring: which job runs how often. APScheduler only says *when*; the
database says *who* (dirty windows are leased, so any number of schedulers may run)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.windows import service as window_service

log = logging.getLogger(__name__)

# Last successful tick (unix seconds), for /metrics and operators.
last_tick_at: float | None = None


def tick(
    *, settings: Settings, factory: sessionmaker[Session], read_factory: sessionmaker[Session]
) -> None:
    """One scheduler tick: compute dirty windows. A failing tick is logged and retried
    at the next interval; the dirty marks stay, so nothing is lost."""
    global last_tick_at
    try:
        window_service.compute_pass(factory=factory, read_factory=read_factory, settings=settings)
        last_tick_at = time.time()
    except Exception:
        log.exception("compute pass failed; will retry next tick")


def _configure(
    scheduler: BaseScheduler,
    *,
    settings: Settings,
    factory: sessionmaker[Session],
    read_factory: sessionmaker[Session],
) -> BaseScheduler:
    scheduler.add_job(
        tick,
        "interval",
        seconds=settings.compute_interval_s,
        kwargs={"settings": settings, "factory": factory, "read_factory": read_factory},
        id="compute",
        max_instances=1,
        coalesce=True,
        # First tick right after start rather than a whole interval later.
        next_run_time=datetime.now(UTC) + timedelta(seconds=1),
    )
    return scheduler


def start_background(
    *, settings: Settings, factory: sessionmaker[Session], read_factory: sessionmaker[Session]
) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    _configure(scheduler, settings=settings, factory=factory, read_factory=read_factory)
    scheduler.start()
    return scheduler


def run_blocking(
    *, settings: Settings, factory: sessionmaker[Session], read_factory: sessionmaker[Session]
) -> None:
    scheduler = BlockingScheduler(timezone="UTC")
    _configure(scheduler, settings=settings, factory=factory, read_factory=read_factory)
    scheduler.start()
