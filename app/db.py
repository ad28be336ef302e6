"""Database plumbing: MetaData naming convention, engine factory, session scope.

Engines are built by create_engine_for(settings), never at import time. SQLite gets
WAL + a busy timeout so the API and a worker can share one file; PostgreSQL gets a
pre-pinged pool so a restarted server is reconnected to without restarting us (the API's
pool pings only connections that sat idle: under load a ping per request cost as much
as the insert it preceded).

The API's engine is built with `for_requests=True`: every wait on a lock, a busy SQLite
file or the pool is bounded by LOSSMON_DB_LOCK_TIMEOUT_S (API.md "Time bounds and
faults"), and shortened to what is left of the request's deadline when the request
already waited (e.g. for the SQLite write gate). Jobs use an engine without these
bounds: a compute pass may legitimately wait or run longer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, exc, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from app.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Set per request by app/api/write_gate.py: the time.monotonic() by which the request's
# database work must have got its locks. Contextvars follow the request into the
# threadpool, so the engine hooks below see it.
request_deadline: ContextVar[float | None] = ContextVar("lossmon_request_deadline", default=None)

# Jobs wait this long on a busy SQLite file (a request holds the lock for milliseconds).
JOB_BUSY_TIMEOUT_MS = 30_000
# Read-only request statements (history over many windows, on-demand slices) may run
# longer than the lock bound; their lock waits stay bounded by lock_timeout.
READ_STATEMENT_TIMEOUT_MS = 30_000
# A PostgreSQL transaction re-sets its timeouts only when the request's deadline cut
# them by more than this (the common case costs no extra round trip).
_DEADLINE_SLACK_MS = 50


def remaining_ms(bound_ms: int) -> int:
    """What is left of the request's deadline, at most `bound_ms` (no deadline: bound_ms)."""
    deadline = request_deadline.get()
    if deadline is None:
        return bound_ms
    return max(0, min(bound_ms, int((deadline - time.monotonic()) * 1000)))


def cut_lock_timeout_ms(bound_ms: int) -> int | None:
    """The lock timeout a request's transaction must set when the request has already
    used a noticeable part of its deadline (the connection's own `bound_ms` would
    outlast it); None when the connection's own applies."""
    left = remaining_ms(bound_ms)
    if left >= bound_ms - _DEADLINE_SLACK_MS:
        return None
    # 0 would mean "no timeout" to PostgreSQL: a spent deadline still waits 1 ms.
    return max(1, left)


def _sqlite_pragmas(busy_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (it would BEGIN
        # DEFERRED lazily); _sqlite_begin issues BEGIN IMMEDIATE instead, so two
        # writers queue on busy_timeout rather than failing on a read->write upgrade.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable across process crashes
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    return on_connect


def _sqlite_begin(request_bound_ms: int | None) -> Callable[[Any], None]:
    def on_begin(conn: Any) -> None:
        # Readers (history, compute's big read) take a WAL snapshot without the write lock.
        readonly = conn.get_execution_options().get("lossmon_readonly", False)
        if not readonly and request_bound_ms is not None:
            # In-process, no network: re-setting it per write transaction costs ~1 us.
            conn.exec_driver_sql(f"PRAGMA busy_timeout={remaining_ms(request_bound_ms)}")
        conn.exec_driver_sql("BEGIN DEFERRED" if readonly else "BEGIN IMMEDIATE")

    return on_begin


def _pg_request_begin(bound_ms: int) -> Callable[[Any], None]:
    def on_begin(conn: Any) -> None:
        options = conn.get_execution_options()
        cut_ms = cut_lock_timeout_ms(bound_ms)
        readonly = options.get("lossmon_readonly", False)
        if cut_ms is None and not readonly:
            return  # the connection's own settings (see create_engine_for) apply
        # Only lock waits follow the deadline: a statement that got its locks may use
        # the full statement bound (a big batch after a slow upload is not a fault).
        lock_ms = max(1, remaining_ms(bound_ms)) if cut_ms is None else cut_ms
        statement_ms = READ_STATEMENT_TIMEOUT_MS if readonly else bound_ms
        # is_local: only for this transaction; the pooled connection keeps its defaults.
        conn.exec_driver_sql(
            f"SELECT set_config('lock_timeout', '{lock_ms}', true), "
            f"set_config('statement_timeout', '{statement_ms}', true)"
        )

    return on_begin


# The lock timeout of the current transaction only (for a statement in autocommit: sent
# in one pipeline with it, whose implicit transaction ends at the pipeline's Sync).
SET_LOCAL_LOCK_TIMEOUT = "SELECT set_config('lock_timeout', %s, true)"


# The API's pool pings a connection on checkout only when it sat idle this long: a
# server restarted while we were idle is then noticed before a request uses it. Under
# load connections come back within milliseconds and go out unpinged; a connection that
# broke anyway fails its statement, which invalidates the whole pool (SQLAlchemy's
# disconnect handling), so the next checkouts reconnect.
IDLE_PING_S = 1.0
_CHECKED_IN_AT = "lossmon_checked_in_at"


def _ping_when_idle(engine: Engine) -> None:
    def on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN_AT] = time.monotonic()

    def on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        checked_in_at = record.info.get(_CHECKED_IN_AT)
        if checked_in_at is None or time.monotonic() - checked_in_at < IDLE_PING_S:
            return  # just connected, or busy: no ping
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as e:
            # The pool throws this connection away and checks out another (a new one).
            raise exc.DisconnectionError(f"idle connection failed its ping: {e}") from e

    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "checkout", on_checkout)


def request_connect_args(settings: Settings) -> dict[str, Any]:
    """psycopg connection parameters of the API's PostgreSQL connections: the request
    bounds are set server-side once per connection (no round trip per request)."""
    bound_ms = int(settings.db_lock_timeout_s * 1000)
    return {
        "options": f"-c lock_timeout={bound_ms} -c statement_timeout={bound_ms}",
        "connect_timeout": max(2, math.ceil(settings.db_lock_timeout_s)),
    }


def libpq_url(settings: Settings) -> str:
    """The database URL as libpq (psycopg.connect) takes it."""
    return (
        make_url(settings.database_url)
        .set(drivername="postgresql")
        .render_as_string(hide_password=False)
    )


def create_engine_for(settings: Settings, *, for_requests: bool = False, **kwargs: Any) -> Engine:
    """for_requests=True: the API's engine, every wait bounded by db_lock_timeout_s."""
    url = settings.database_url
    bound_ms = int(settings.db_lock_timeout_s * 1000)
    if settings.is_sqlite:
        busy_ms = bound_ms if for_requests else JOB_BUSY_TIMEOUT_MS
        if for_requests:
            kwargs.setdefault("pool_timeout", settings.db_lock_timeout_s)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_ms / 1000},
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas(busy_ms))
        event.listen(engine, "begin", _sqlite_begin(bound_ms if for_requests else None))
        return engine
    connect_args: dict[str, Any] = {"connect_timeout": 5}
    pool_timeout = settings.db_pool_timeout_s
    if for_requests:
        connect_args = request_connect_args(settings)
        pool_timeout = min(pool_timeout, settings.db_lock_timeout_s)
    engine = create_engine(
        url,
        pool_pre_ping=not for_requests,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_pool_size,
        pool_timeout=pool_timeout,
        pool_recycle=1800,
        connect_args=connect_args,
        **kwargs,
    )
    if for_requests:
        _ping_when_idle(engine)
        event.listen(engine, "begin", _pg_request_begin(bound_ms))
    return engine


def make_sessionmaker(engine: Engine, *, readonly: bool = False) -> sessionmaker[Session]:
    """readonly=True: for sessions that only read (SQLite then begins DEFERRED)."""
    bind = engine.execution_options(lossmon_readonly=True) if readonly else engine
    return sessionmaker(bind=bind, expire_on_commit=False, autoflush=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """The unit of work for jobs and the CLI: commit on success, roll back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def is_postgres(session_or_engine: Session | Engine) -> bool:
    bind = (
        session_or_engine.get_bind()
        if isinstance(session_or_engine, Session)
        else session_or_engine
    )
    return bind.dialect.name == "postgresql"
