"""`lossmon migrate` upgrades a database holding data written at revision 0004 (before
retention) without losing a row: every row survives, matched actuals get their
prediction's window, pending ones stay pending, and the upgraded data computes the same
windows. On SQLite and PostgreSQL (a database of its own, dropped afterwards)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import create_engine, text

from app import migrate
from tests.conftest import PG_ADMIN_URL, _pg_available, _pg_url_for

PREVIOUS = "0004"
T0 = 1795168800  # 2026-11-20T10:00:00Z

# Written with plain SQL as the 0004 schema knew it (no app code of today involved).
ROWS_0004 = [
    "INSERT INTO models (id, task, window, window_seconds, classes, description, "
    "reference_base_rate, clip_eps, created_at, updated_at) VALUES "
    "('ctr', 'binary', '1h', 3600, NULL, '', NULL, 1e-15, '2026-11-20 09:00:00', "
    "'2026-11-20 09:00:00')",
    *(
        "INSERT INTO predictions (model_id, prediction_id, ts_us, window_start, score, "
        "probabilities, model_version, segments, received_us) VALUES "
        f"('ctr', 'p{i}', {(T0 + 600 * i) * 1_000_000}, {(T0 + 600 * i) // 3600 * 3600}, "
        f"{0.1 + 0.08 * i}, NULL, 'v1', '{{\"country\": \"DE\"}}', {T0 * 1_000_000})"
        for i in range(10)
    ),
    *(
        "INSERT INTO actuals (model_id, prediction_id, label, weight, ts_us, received_us, "
        f"pending) VALUES ('ctr', '{pid}', {i % 2}, 1.0, {T0 * 1_000_000}, "
        f"{T0 * 1_000_000}, {pending})"
        for i, (pid, pending) in enumerate(
            [(f"p{i}", "false") for i in range(8)] + [("early", "true")]
        )
    ),
    f"INSERT INTO dirty_windows (model_id, window_start, generation) VALUES ('ctr', {T0}, 1)",
]
COUNTED = ("models", "predictions", "actuals", "dirty_windows")


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    if not _pg_available():
        pytest.skip(f"PostgreSQL unreachable at {PG_ADMIN_URL}")
    name = f"lossmon_test_migrate_{os.getpid()}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url_for(name)
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_migrate_keeps_every_row_written_at_the_previous_revision(fresh_url: str) -> None:
    migrate.upgrade(fresh_url, PREVIOUS)
    engine = create_engine(fresh_url)
    try:
        with engine.begin() as conn:
            for statement in ROWS_0004:
                # "window" is a keyword on PostgreSQL; the column is quoted there.
                conn.execute(text(statement.replace(" window,", ' "window",')))
        with engine.connect() as conn:
            before = {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in COUNTED
            }
        assert before == {"models": 1, "predictions": 10, "actuals": 9, "dirty_windows": 1}

        env = {**os.environ, "LOSSMON_DATABASE_URL": fresh_url}
        done = subprocess.run(
            [sys.executable, "-m", "app.cli", "migrate"], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert migrate.current_revision(engine) == migrate.head_revision()

        with engine.connect() as conn:
            after = {
                t: conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in COUNTED
            }
            actuals = {
                pid: (pending, ws)
                for pid, pending, ws in conn.execute(
                    text("SELECT prediction_id, pending, window_start FROM actuals")
                )
            }
            retention = conn.execute(text("SELECT retention_days FROM models")).scalar_one()
        assert after["predictions"] == before["predictions"]
        assert after["actuals"] == before["actuals"]
        assert after["models"] == before["models"]
        assert retention is None  # keep forever, as before
        for i in range(8):
            assert actuals[f"p{i}"] == (False, (T0 + 600 * i) // 3600 * 3600)
        assert actuals["early"] == (True, None)

        # The upgraded data computes: the 0004 dirty window and the labels join.
        compute = subprocess.run(
            [sys.executable, "-m", "app.cli", "compute"], env=env, capture_output=True, text=True
        )
        assert compute.returncode == 0, compute.stderr
        with engine.connect() as conn:
            labeled = conn.execute(
                text("SELECT predictions, labeled FROM window_metrics WHERE window_start = :w"),
                {"w": T0},
            ).one()
        assert tuple(labeled) == (6, 6)
    finally:
        engine.dispose()
