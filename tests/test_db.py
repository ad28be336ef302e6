"""app/db.py: the request engine's deadline on a one-statement unit of work in autocommit
(deadline_bounded_statement), against a real PostgreSQL holding a real lock."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from app.db import (
    create_engine_for,
    deadline_bounded_statement,
    make_statement_sessionmaker,
    request_deadline,
    session_scope,
)
from tests.conftest import Db

BOUND_S = 2.0


@pytest.fixture
def request_engine(pg_db: Db) -> Iterator[Engine]:
    with pg_db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS deadline_probe (id text)"))
        conn.execute(text("TRUNCATE deadline_probe"))
    engine = create_engine_for(pg_db.settings_with(db_lock_timeout_s=BOUND_S), for_requests=True)
    yield engine
    engine.dispose()


def _lock_timeout(engine: Engine) -> str:
    with engine.connect() as conn:
        return str(conn.execute(text("SHOW lock_timeout")).scalar_one())


def _held_lock(pg_db: Db) -> psycopg.Connection:
    holder = psycopg.connect(pg_db.url.replace("+psycopg", ""))
    holder.execute("LOCK TABLE deadline_probe IN ACCESS EXCLUSIVE MODE")
    return holder


def _insert(request_engine: Engine, row_id: str) -> None:
    factory = make_statement_sessionmaker(request_engine)
    assert factory is not None
    with session_scope(factory) as session, deadline_bounded_statement(session):
        session.connection().exec_driver_sql(f"INSERT INTO deadline_probe VALUES ('{row_id}')")


def test_a_cut_deadline_bounds_the_statement_lock_wait_in_one_implicit_transaction(
    pg_db: Db, request_engine: Engine
) -> None:
    holder = _held_lock(pg_db)
    # The request arrived 1.7 s ago: 0.3 s of its 2 s bound are left.
    token = request_deadline.set(time.monotonic() + 0.3)
    try:
        started = time.monotonic()
        with pytest.raises(Exception, match="lock timeout"):
            _insert(request_engine, "cut")
        waited = time.monotonic() - started
    finally:
        request_deadline.reset(token)
        holder.rollback()
        holder.close()
    # Without the cut the connection's own 2 s would apply.
    assert 0.2 < waited < 1.0, waited
    # The cut was local to the statement's implicit transaction: the pooled connection
    # keeps the whole bound for the next request.
    assert _lock_timeout(request_engine) == "2s"


def test_a_cut_statement_commits_and_leaves_the_connection_as_it_was(
    pg_db: Db, request_engine: Engine
) -> None:
    token = request_deadline.set(time.monotonic() + 1.0)  # cut, no lock held
    try:
        _insert(request_engine, "committed")
    finally:
        request_deadline.reset(token)
    assert pg_db.count("deadline_probe WHERE id = 'committed'") == 1  # another connection sees it
    assert _lock_timeout(request_engine) == "2s"


def test_a_fresh_request_uses_the_connections_own_bound(pg_db: Db, request_engine: Engine) -> None:
    holder = _held_lock(pg_db)
    token = request_deadline.set(time.monotonic() + BOUND_S)
    try:
        started = time.monotonic()
        # Lock and statement timeout are both the bound: whichever PostgreSQL checks first.
        with pytest.raises(Exception, match=r"(lock|statement) timeout"):
            _insert(request_engine, "fresh")
        waited = time.monotonic() - started
    finally:
        request_deadline.reset(token)
        holder.rollback()
        holder.close()
    assert BOUND_S - 0.1 < waited < BOUND_S + 1.0, waited
    assert pg_db.count("deadline_probe WHERE id = 'fresh'") == 0
