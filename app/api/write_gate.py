"""Bounded waits for request writes (API.md "Time bounds and faults").

Every request gets a deadline when it arrives (LOSSMON_DB_LOCK_TIMEOUT_S later; the
engine hooks in app/db.py cut lock and busy waits to what is left of it). Every request
that opens a write session passes the gate below first: it admits a bounded number of
writers per process, one on SQLite, `LOSSMON_DB_POOL_SIZE` on PostgreSQL.

Why: a writer that waits for a lock waits inside a threadpool thread (and on SQLite
inside sqlite3's sleeping busy handler) holding a pooled connection. With a lock held
elsewhere, every queued write would park a thread and a connection until both ran dry
and reads queued behind them. Here the queue is an asyncio semaphore on the event loop:
waiters hold neither, give up at their deadline (503 + Retry-After), and at most
`slots` threads can be stuck on the lock. On SQLite the file has one writer at a time
anyway; on PostgreSQL the pool's overflow connections stay free for reads.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.config import Settings
from app.db import request_deadline


class DatabaseBusy(Exception):
    """The request's database work could not start within the lock timeout."""


class WriteGate:
    def __init__(self, *, timeout_s: float, slots: int) -> None:
        self.timeout_s = timeout_s
        self.slots = slots
        # Created lazily: an asyncio primitive belongs to the loop that first uses it.
        self._semaphore: asyncio.Semaphore | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WriteGate:
        slots = 1 if settings.is_sqlite else settings.db_pool_size
        return cls(timeout_s=settings.db_lock_timeout_s, slots=slots)

    async def enter(self) -> asyncio.Semaphore:
        """Wait, at most until the request's deadline, for a writer slot."""
        deadline = request_deadline.get()
        if deadline is None:  # a caller without the middleware (tests): start it now
            deadline = time.monotonic() + self.timeout_s
            request_deadline.set(deadline)
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.slots)
        semaphore = self._semaphore
        if not semaphore.locked():
            await semaphore.acquire()  # free: never refused, however late the request is
            return semaphore
        try:
            async with asyncio.timeout_at(_loop_time_of(deadline)):
                await semaphore.acquire()
        except TimeoutError:
            raise DatabaseBusy("all writer slots stayed busy for the lock timeout") from None
        return semaphore


def _loop_time_of(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


class RequestDeadlineMiddleware:
    """Starts every request's deadline when it arrives (pure ASGI, so the contextvar is
    set in the request's own task and follows it into dependencies and threads): what a
    client sees is bounded, not only the wait after routing and validation."""

    def __init__(self, app: ASGIApp, *, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            request_deadline.set(time.monotonic() + self.timeout_s)
        await self.app(scope, receive, send)


async def write_slot(request: Request) -> AsyncIterator[None]:
    """Dependency of the write session: runs on the event loop, before any thread hop."""
    gate: WriteGate = request.app.state.write_gate
    semaphore = await gate.enter()
    try:
        yield
    finally:
        semaphore.release()
