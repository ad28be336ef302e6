"""app/pg_statement_pool.py and the statement awaited on it (bulk.insert_predictions_on),
against a real PostgreSQL: connections reused, a broken one replaced without failing a
request, a cancelled statement's connection never reused, and a request's cut deadline
bounding the statement's lock wait in one round trip."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from app import db as app_db
from app.db import request_deadline
from app.ingestion import bulk, pg_arrays
from app.pg_statement_pool import StatementPool
from tests.conftest import Db

BOUND_S = 2.0
VERSION = datetime(2026, 1, 1, tzinfo=UTC)


def _plain(url: str) -> str:
    return url.replace("+psycopg", "")


@pytest.fixture
def model(pg_db: Db) -> Iterator[str]:
    with psycopg.connect(_plain(pg_db.url), autocommit=True) as conn:
        conn.execute(
            'INSERT INTO models (id, task, "window", window_seconds, description, clip_eps,'
            " created_at, updated_at) VALUES ('m', 'binary', '1h', 3600, '', 1e-15, %s, %s)",
            (VERSION, VERSION),
        )
    yield "m"


def _pool(pg_db: Db, slots: int = 2) -> StatementPool:
    return StatementPool.from_settings(
        pg_db.settings_with(db_lock_timeout_s=BOUND_S), slots=slots, configure=pg_arrays.prepare
    )


def _rows(ids: list[str]) -> bulk.PredictionRows:
    ts = 1_767_225_600_000_000  # 2026-01-01
    n = len(ids)
    return bulk.PredictionRows(
        prediction_ids=ids,
        ts_us=[ts] * n,
        window_starts=[ts // 1_000_000] * n,
        scores=[0.25] * n,
        probabilities=[None] * n,
        model_versions=[""] * n,
        segments=[None] * n,
    )


async def _insert(pool: StatementPool, ids: list[str], lock_timeout_ms: int | None = None) -> Any:
    async with pool.connection() as conn:
        return await bulk.insert_predictions_on(
            conn,
            model_id="m",
            model_version=VERSION,
            rows=_rows(ids),
            received_us=0,
            lock_timeout_ms=lock_timeout_ms,
        )


def _backend_pids(pg_db: Db) -> set[int]:
    with psycopg.connect(_plain(pg_db.url)) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid()"
        ).fetchall()
    return {r[0] for r in rows}


def test_inserts_and_reuses_its_connection(pg_db: Db, model: str) -> None:
    async def run() -> list[Any]:
        pool = _pool(pg_db)
        try:
            first = await _insert(pool, ["a", "b"])
            again = await _insert(pool, ["b", "c"])
            return [first, again, len(pool._idle)]
        finally:
            await pool.close()

    assert pg_db.count("predictions") == 0  # (its engine's pooled connection stays open)
    before = _backend_pids(pg_db)
    assert asyncio.run(run()) == [2, 1, 1]  # "b" was stored once; one connection kept
    assert pg_db.count("predictions") == 3
    assert pg_db.count("window_changes") >= 1
    assert _backend_pids(pg_db) == before  # closed with the pool


def test_a_model_changed_meanwhile_inserts_nothing(pg_db: Db, model: str) -> None:
    async def run() -> Any:
        pool = _pool(pg_db)
        try:
            async with pool.connection() as conn:
                return await bulk.insert_predictions_on(
                    conn,
                    model_id="m",
                    model_version=datetime(2025, 1, 1, tzinfo=UTC),  # not the row's
                    rows=_rows(["x"]),
                    received_us=0,
                    lock_timeout_ms=None,
                )
        finally:
            await pool.close()

    assert asyncio.run(run()) is None
    assert pg_db.count("predictions") == 0


def test_an_idle_connection_killed_meanwhile_is_replaced_without_an_error(
    pg_db: Db, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database restart while the API was idle: the next request gets a new
    connection, not a 503."""
    monkeypatch.setattr("app.pg_statement_pool.IDLE_PING_S", 0.0)

    async def run() -> Any:
        pool = _pool(pg_db)
        try:
            await _insert(pool, ["a"])
            ((conn, _),) = pool._idle
            with psycopg.connect(_plain(pg_db.url), autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
            return await _insert(pool, ["b"])
        finally:
            await pool.close()

    assert asyncio.run(run()) == 1
    assert pg_db.count("predictions") == 2


def test_a_cancelled_statement_closes_its_connection(pg_db: Db, model: str) -> None:
    async def run() -> list[Any]:
        pool = _pool(pg_db)
        holder = psycopg.connect(_plain(pg_db.url))
        holder.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        try:
            task = asyncio.ensure_future(_insert(pool, ["a"]))
            await asyncio.sleep(0.3)  # waiting for the lock
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return [len(pool._idle)]
        finally:
            holder.rollback()
            holder.close()
            await pool.close()

    assert asyncio.run(run()) == [0]  # mid-statement: never reused


def test_a_cut_deadline_bounds_the_lock_wait_and_stays_local(pg_db: Db, model: str) -> None:
    """What the router passes for a request that queued: the lock wait ends at the
    request's deadline (the connection's own 2 s would outlast it), and the pooled
    connection keeps its own bound for the next request."""

    async def run() -> list[Any]:
        pool = _pool(pg_db)
        holder = psycopg.connect(_plain(pg_db.url))
        holder.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        token = request_deadline.set(time.monotonic() + 0.3)  # 1.7 s of 2 s spent
        try:
            cut = app_db.cut_lock_timeout_ms(int(BOUND_S * 1000))
            assert cut is not None and cut <= 300
            started = time.monotonic()
            with pytest.raises(psycopg.errors.LockNotAvailable):
                await _insert(pool, ["a"], lock_timeout_ms=cut)
            waited = time.monotonic() - started
        finally:
            request_deadline.reset(token)
            holder.rollback()
            holder.close()
        try:
            async with pool.connection() as conn:  # the same connection, reused
                shown = await (await conn.execute("SHOW lock_timeout")).fetchone()
            return [waited, len(pool._idle), shown]
        finally:
            await pool.close()

    waited, idle, shown = asyncio.run(run())
    assert 0.2 < waited < 1.5, waited  # the connection's own bound would be 2 s
    assert idle == 1  # a clean lock timeout leaves the connection usable
    assert shown == ("2s",)
    assert pg_db.count("predictions") == 0


def test_a_fresh_request_waits_the_connections_own_bound(pg_db: Db, model: str) -> None:
    async def run() -> float:
        pool = _pool(pg_db)
        holder = psycopg.connect(_plain(pg_db.url))
        holder.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        try:
            started = time.monotonic()
            # Lock and statement timeout are both the bound: whichever PostgreSQL checks first.
            with pytest.raises(psycopg.OperationalError, match=r"(lock|statement) timeout"):
                await _insert(pool, ["a"])
            return time.monotonic() - started
        finally:
            holder.rollback()
            holder.close()
            await pool.close()

    waited = asyncio.run(run())
    assert BOUND_S - 0.1 < waited < BOUND_S + 1.5, waited


def test_a_connection_is_awaited_no_longer_than_the_request_deadline() -> None:
    """A server that takes the TCP connection and never answers (a host gone from the
    network behaves alike): libpq's own connect timeout is 2 s at least; the request's
    deadline ends the wait first, with the error the API answers 503 for."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # never accepted: the kernel completes the handshake, nobody answers
    port = silent.getsockname()[1]

    async def run() -> float:
        pool = StatementPool(
            f"host=127.0.0.1 port={port} user=lossmon dbname=lossmon",
            connect_args={"connect_timeout": 2},
            max_idle=1,
        )
        token = request_deadline.set(time.monotonic() + 0.3)
        started = time.monotonic()
        try:
            with pytest.raises(psycopg.OperationalError, match="lock timeout"):
                async with pool.connection():
                    pass
            return time.monotonic() - started
        finally:
            request_deadline.reset(token)
            await pool.close()

    try:
        waited = asyncio.run(run())
    finally:
        silent.close()
    assert 0.25 < waited < 1.2, waited  # libpq alone would wait 2 s
