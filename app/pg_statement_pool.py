"""PostgreSQL connections for the API's one-statement writes, awaited on the event loop.

A prediction batch is ONE statement in autocommit (app/ingestion/bulk.py). Run through
SQLAlchemy's sync pool it took a threadpool hop per request: waking a worker thread and
handing the GIL back and forth cost ~11% of the API's CPU on 1,000-row batches and more
on single-prediction POSTs (py-spy --gil), all of it on the request's path. Awaited on
an async psycopg connection it costs neither: the event loop sends the statement and
serves other requests until the answer is readable.

No pool library: the write gate (app/api/write_gate.py) already admits at most `slots`
writers per process, so at most that many connections are ever in use; idle ones wait
here for the next writer. A connection that sat idle for a while is pinged before use
(a database restarted meanwhile is noticed without failing a request); one whose
statement failed in a way that may leave it unusable (it broke, or the request was
cancelled mid-statement) is closed, never reused, and the next writer opens a new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg import pq

from app.config import Settings
from app.db import IDLE_PING_S, libpq_url, request_connect_args, request_deadline

# A request whose deadline is spent still gets this long for a connection: a loopback
# connect takes a few milliseconds (its lock waits are cut to 1 ms just the same).
_MIN_CONNECT_S = 0.05


class StatementPool:
    def __init__(
        self,
        conninfo: str,
        *,
        connect_args: dict[str, Any],
        max_idle: int,
        configure: Callable[[psycopg.AsyncConnection[Any]], None] | None = None,
    ) -> None:
        self._conninfo = conninfo
        self._connect_args = connect_args
        self._max_idle = max_idle
        self._configure = configure
        # (connection, time.monotonic() it came back): the newest is reused first.
        self._idle: list[tuple[psycopg.AsyncConnection[Any], float]] = []

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        slots: int,
        configure: Callable[[psycopg.AsyncConnection[Any]], None] | None = None,
    ) -> StatementPool:
        """The API's bounds on its connections (app/db.py request_connect_args);
        `configure` runs on each new connection (adapters, before any cursor)."""
        return cls(
            libpq_url(settings),
            connect_args=request_connect_args(settings),
            max_idle=slots,
            configure=configure,
        )

    async def _open(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, **self._connect_args
        )
        if self._configure is not None:
            self._configure(conn)
        return conn

    async def _checkout(self) -> psycopg.AsyncConnection[Any]:
        """A connection within what is left of the request's deadline: libpq's own
        connect timeout is whole seconds, at least 2, and an idle connection's ping has
        none (a host gone from the network would hold it until TCP gives up)."""
        if self._idle and time.monotonic() - self._idle[-1][1] < IDLE_PING_S:
            return self._idle.pop()[0]  # busy: used moments ago, nothing to wait for
        deadline = request_deadline.get()
        if deadline is None:
            return await self._checkout_unbounded()
        try:
            async with asyncio.timeout(max(deadline - time.monotonic(), _MIN_CONNECT_S)):
                return await self._checkout_unbounded()
        except TimeoutError:
            # The API's handlers answer this 503 + Retry-After (api/errors.py).
            raise psycopg.OperationalError(
                "no database connection within the request's lock timeout"
            ) from None

    async def _checkout_unbounded(self) -> psycopg.AsyncConnection[Any]:
        while self._idle:
            conn, since = self._idle.pop()
            if time.monotonic() - since < IDLE_PING_S:
                return conn  # busy: it was used moments ago
            try:
                await conn.execute("SELECT 1")
            except psycopg.Error:
                await conn.close()  # broken while idle (a restart): try the next one
                continue
            except BaseException:
                await conn.close()  # cancelled mid-ping: it may be mid-protocol
                raise
            return conn
        return await self._open()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A connection in autocommit for one statement (or one pipeline)."""
        conn = await self._checkout()
        try:
            yield conn
        except BaseException as exc:
            # A statement that failed cleanly (a lock timeout, a constraint) leaves the
            # connection idle and usable; anything else (cancelled mid-statement, a broken
            # socket) may leave it mid-protocol.
            await self._put_back(conn, reuse=isinstance(exc, psycopg.Error))
            raise
        await self._put_back(conn, reuse=True)

    async def _put_back(self, conn: psycopg.AsyncConnection[Any], *, reuse: bool) -> None:
        if reuse and len(self._idle) < self._max_idle and _reusable(conn):
            self._idle.append((conn, time.monotonic()))
        else:
            await conn.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await conn.close()


def _reusable(conn: psycopg.AsyncConnection[Any]) -> bool:
    return not conn.closed and conn.info.transaction_status == pq.TransactionStatus.IDLE
