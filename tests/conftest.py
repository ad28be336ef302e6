"""Real databases for every test: SQLite (a fresh file) and PostgreSQL (a fresh
database per xdist worker, migrated once, tables truncated between tests).

PostgreSQL comes from LOSSMON_TEST_PG_URL (default: the local trust-auth server at
127.0.0.1:5432, user postgres). When it is unreachable the PostgreSQL half is skipped
and a banner says so at the end of the run; with LOSSMON_REQUIRE_PG=1 (set by .ci/run)
that is an error instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from hypothesis import settings as hypothesis_settings
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from app import devserver, migrate
from app.config import Settings, load_settings
from app.db import create_engine_for, make_sessionmaker
from app.main import create_app
from tests.notify.receiver import Receiver

# CI replays the same examples every run (a property failure is then reproducible, never
# a coin toss); locally each run explores new ones.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

PG_ADMIN_URL = os.environ.get(
    "LOSSMON_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_PG = os.environ.get("LOSSMON_REQUIRE_PG") == "1"
TABLES = [
    "api_keys",
    "webhook_deliveries",
    "alerts",
    "monitors",
    "window_metrics",
    "slice_metrics",
    "dirty_windows",
    "window_changes",
    "actuals",
    "predictions",
    "models",
]

_pg_state: dict[str, object] = {"checked": False, "ok": False, "why": "", "ran": 0}


def _pg_available() -> bool:
    if not _pg_state["checked"]:
        _pg_state["checked"] = True
        try:
            with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
                _pg_state["ok"] = True
        except Exception as exc:
            _pg_state["why"] = f"{type(exc).__name__}: {exc}".strip()
    return bool(_pg_state["ok"])


def _worker_db_name(worker_id: str) -> str:
    # Unique per pytest process, so two runs on one server never share a database.
    return f"lossmon_test_{worker_id}_{os.getpid()}".replace("-", "_")


def _pg_url_for(dbname: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return base.replace("postgresql://", "postgresql+psycopg://", 1) + "/" + dbname


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    return str(getattr(request.config, "workerinput", {}).get("workerid", "main"))


@pytest.fixture(scope="session")
def pg_database_url(worker_id: str) -> Iterator[str]:
    if not _pg_available():
        if REQUIRE_PG:
            pytest.fail(
                f"PostgreSQL is required (LOSSMON_REQUIRE_PG=1) but unreachable: {_pg_state['why']}"
            )
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}: {_pg_state['why']}")
    name = _worker_db_name(worker_id)
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _pg_url_for(name)
    migrate.upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@dataclass
class Db:
    kind: str
    url: str
    settings: Settings
    engine: Engine
    factory: sessionmaker[Session]
    read_factory: sessionmaker[Session]

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())

    def pending_windows(self) -> int:
        """Windows waiting for a compute pass: queued in dirty_windows or logged in
        window_changes and not folded yet."""
        return self.count(
            "(SELECT model_id, window_start FROM dirty_windows UNION "
            "SELECT model_id, window_start FROM window_changes) AS pending"
        )

    def settings_with(self, **overrides: object) -> Settings:
        return load_settings(database_url=self.url, **overrides)


def _make_db(kind: str, url: str) -> Db:
    settings = load_settings(database_url=url, compute_interval_s=3600)
    engine = create_engine_for(settings)
    return Db(
        kind,
        url,
        settings,
        engine,
        make_sessionmaker(engine),
        make_sessionmaker(engine, readonly=True),
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[Db]:
    if request.param == "sqlite":
        path = tmp_path / "lossmon.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite:///{path}"
    else:
        url = request.getfixturevalue("pg_database_url")
        with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("TRUNCATE " + ", ".join(TABLES) + " CASCADE")
        _pg_state["ran"] = int(_pg_state["ran"]) + 1  # type: ignore[call-overload]
    database = _make_db(request.param, url)
    yield database
    database.engine.dispose()


@pytest.fixture
def pg_db(request: pytest.FixtureRequest) -> Iterator[Db]:
    """PostgreSQL only (row locks, concurrency)."""
    url = request.getfixturevalue("pg_database_url")
    with psycopg.connect(url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute("TRUNCATE " + ", ".join(TABLES) + " CASCADE")
    _pg_state["ran"] = int(_pg_state["ran"]) + 1  # type: ignore[call-overload]
    database = _make_db("postgresql", url)
    yield database
    database.engine.dispose()


@pytest.fixture
def client(db: Db) -> Iterator[TestClient]:
    with TestClient(create_app(db.settings)) as c:
        yield c


Server = devserver.ServerProcess
free_port = devserver.free_port


def start_server(
    database_url: str,
    tmp_path: Path,
    *,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = ("--no-scheduler",),
) -> Server:
    """A real `lossmon serve` (uvicorn) on a free loopback port, run inside tmp_path."""
    return devserver.start_serve(database_url, workdir=tmp_path, extra_env=extra_env, args=args)


def stop_server(server: Server) -> None:
    devserver.terminate(server.process)


@pytest.fixture
def server(db: Db, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(db.url, tmp_path)
    yield srv
    stop_server(srv)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real webhook receiver listening on loopback."""
    r = Receiver(free_port())
    r.start()
    yield r
    r.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # Under xdist this runs in the controller, which ran no test: ask the server itself.
    if not _pg_available():
        bar = "!" * 78
        terminalreporter.write_line(bar, red=True, bold=True)
        terminalreporter.write_line(
            f"!!  PostgreSQL half SKIPPED: no server reachable at {PG_ADMIN_URL}",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(f"!!  {_pg_state['why']}", red=True, bold=True)
        terminalreporter.write_line(
            "!!  Only SQLite was tested. Start PostgreSQL (see README) and re-run.",
            red=True,
            bold=True,
        )
        terminalreporter.write_line(bar, red=True, bold=True)
