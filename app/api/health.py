"""Liveness and readiness (no auth).

Both are `async def` on purpose: they must answer while every threadpool thread is
busy (API.md "Time bounds and faults"). /healthz touches nothing; /readyz runs its
bounded database check on threads of its own.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Any

import anyio
import anyio.to_thread
import psycopg
from alembic.runtime.migration import MigrationContext
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from app.db import request_deadline

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)

# A readiness probe should answer within a typical probe timeout (1 s), and sooner
# than a write would give up.
READY_TIMEOUT_S = 1.0
# /readyz never takes more than this many threads, even when its checks are stuck.
READY_THREADS = 2


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (answers without the database or a request thread)."""
    return {"status": "ok"}


def _check(engine: Engine, expected: str | None, timeout_s: float) -> str | None:
    """The schema revision; at `expected`, only once a write could take its locks
    within timeout_s.

    Raises when the database is unreachable or a write could not proceed in time."""
    # This thread's own copy of the request context: the engine hooks bound every
    # wait (pool, lock, busy file) by it.
    request_deadline.set(time.monotonic() + timeout_s)
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        if current != expected:
            return current  # the tables may not even exist yet
        if conn.dialect.name == "postgresql":
            # What an ingest INSERT needs; conflicts only with locks that block writes
            # (LOCK TABLE, ALTER TABLE, VACUUM FULL). Released by the rollback below.
            conn.execute(text("LOCK TABLE predictions, actuals IN ROW EXCLUSIVE MODE"))
        else:
            # The connection began BEGIN IMMEDIATE: it already holds the write lock.
            conn.execute(text("SELECT 1"))
        conn.rollback()
    return current


def _is_lock_wait(exc: BaseException) -> bool:
    """A held lock or a busy file (not a dead server)."""
    if isinstance(exc, TimeoutError | PoolTimeout):
        return True
    orig = getattr(exc, "orig", exc)
    if isinstance(orig, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
        return True
    return isinstance(orig, sqlite3.OperationalError) and "locked" in str(orig)


def _unavailable(detail: str) -> JSONResponse:
    return JSONResponse(
        {"status": "unavailable", "detail": detail},
        status_code=503,
        headers={"Retry-After": "5"},
    )


@router.get(
    "/readyz",
    responses={503: {"description": "database unreachable or locked, or schema behind"}},
)
async def readyz(request: Request) -> Any:
    """The database answers, a write could take its locks now, and the schema is at
    the latest migration. Answers within about a second in every case."""
    state = request.app.state
    head = state.migration_head
    timeout_s = min(READY_TIMEOUT_S, state.settings.db_lock_timeout_s)
    limiter = getattr(state, "ready_limiter", None)
    if limiter is None:
        limiter = state.ready_limiter = anyio.CapacityLimiter(READY_THREADS)
    try:
        # The slack covers the thread hop; a check stuck past it is left to finish alone.
        with anyio.fail_after(timeout_s + 0.5):
            current = await anyio.to_thread.run_sync(
                _check, state.engine, head, timeout_s, limiter=limiter, abandon_on_cancel=True
            )
    except Exception as exc:  # unreachable, locked or too slow: not ready
        log.warning("readyz: database unavailable: %s", type(exc).__name__)
        if _is_lock_wait(exc):
            return _unavailable("database locked: writes cannot proceed")
        return _unavailable("database unreachable")
    if current != head:
        return JSONResponse(
            {
                "status": "unavailable",
                "detail": f"database schema at {current}, code expects {head}; "
                "run `lossmon migrate`",
            },
            status_code=503,
        )
    return {"status": "ready", "schema": current}
