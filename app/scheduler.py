"""APScheduler wiring: which job runs how often. APScheduler only says *when*; the
database says *who* (dirty windows, monitors and deliveries are claimed with row locks
or leases, so any number of schedulers may run against one database)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.orm import Session, sessionmaker

from app import counters, jobs
from app.config import Settings

log = logging.getLogger(__name__)


def _guarded(name: str, job: Callable[..., Any], **kwargs: Any) -> None:
    """A failing job is logged and retried at its next interval. Its work is still
    marked in the database (dirty windows, needs_eval, pending deliveries): nothing is lost."""
    counters.record_job_start(name, time.time())
    started = time.perf_counter()
    try:
        job(**kwargs)
        counters.record_job_run(name, time.time())
    except Exception:
        log.exception("%s job failed; will retry next interval", name)
    finally:
        counters.record_job_duration(name, time.perf_counter() - started)


def _configure(
    scheduler: BaseScheduler,
    *,
    settings: Settings,
    factory: sessionmaker[Session],
    read_factory: sessionmaker[Session],
) -> BaseScheduler:
    soon = datetime.now(UTC) + timedelta(seconds=1)
    scheduler.add_job(
        _guarded,
        "interval",
        seconds=settings.compute_interval_s,
        args=["compute", jobs.compute_and_evaluate],
        kwargs={"settings": settings, "factory": factory, "read_factory": read_factory},
        id="compute",
        max_instances=1,
        coalesce=True,
        next_run_time=soon,  # first tick right after start, not a whole interval later
    )
    scheduler.add_job(
        _guarded,
        "interval",
        seconds=settings.deliver_interval_s,
        args=["deliver", jobs.deliver_webhooks],
        kwargs={"settings": settings, "factory": factory},
        id="deliver",
        max_instances=1,
        coalesce=True,
        next_run_time=soon,
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
