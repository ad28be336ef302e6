"""app/ingestion/pg_arrays.py: arrays packed by hand read back in PostgreSQL as the same
values psycopg's own list adaptation gives (PostgreSQL only)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from app.db import session_scope
from app.ingestion import pg_arrays
from app.registry import service as model_service
from app.registry.schemas import ModelIn
from tests.conftest import Db

TEXTS: list[list[str | None]] = [
    ["a", "b"],
    ["", "é", "日本語", "tab\there", 'quote" and \\ backslash', "x" * 300],
    ["a", None, "", None],
    [None],
    [],
    # One width, ASCII (the numpy path); one width in characters but not in bytes; the
    # same total length with different widths; one width of empty strings.
    ["p000000001", "p000000002", "zzzzzzzzzz"],
    ["é", "a"],
    ["ab", "c", "def"],
    ["", ""],
]
FLOATS: list[list[float | None]] = [
    [0.1, 1.0, 0.0, -0.0, 5e-324, 0.49721254381585167, 1 - 2**-53],
    [0.5, None, 0.25],
    [None, None],
    [],
]
INTS: list[list[int]] = [[0, 1, -1, 2**63 - 1, -(2**63), 1_763_596_807_404_634], []]


def _read(db: Db, sql_type: str, packed: Any, plain: list[Any]) -> tuple[Any, Any]:
    with psycopg.connect(db.url.replace("+psycopg", "")) as conn:
        pg_arrays.prepare(conn)
        row = conn.execute(
            f"SELECT %b::{sql_type}[], %b::{sql_type}[], "
            f"%b::{sql_type}[] IS NOT DISTINCT FROM %b::{sql_type}[]",
            (packed, plain, packed, plain),
        ).fetchone()
    assert row is not None
    assert row[2] is True  # equal inside PostgreSQL too (NULLs, -0.0 bit for bit aside)
    return row[0], row[1]


@pytest.mark.parametrize("values", TEXTS)
def test_text_array(pg_db: Db, values: list[str | None]) -> None:
    ours, theirs = _read(pg_db, "text", pg_arrays.text_array(values), values)
    assert ours == theirs == values


@pytest.mark.parametrize("values", FLOATS)
def test_float8_array_is_exact(pg_db: Db, values: list[float | None]) -> None:
    ours, theirs = _read(pg_db, "float8", pg_arrays.float8_array(values), values)
    assert [None if v is None else v.hex() for v in ours] == [
        None if v is None else v.hex() for v in values
    ]
    assert ours == theirs


@pytest.mark.parametrize("values", INTS)
def test_int8_array(pg_db: Db, values: list[int]) -> None:
    ours, theirs = _read(pg_db, "bigint", pg_arrays.int8_array(values), values)
    assert ours == theirs == values


def test_int8_array_refuses_what_bigint_cannot_hold() -> None:
    with pytest.raises(OverflowError):
        pg_arrays.int8_array([2**63])


def test_a_connection_opened_before_the_ingest_path_was_imported_inserts(pg_db: Db) -> None:
    """A fresh process whose pooled connection opened before anything imported the
    ingest path (as bench/scale.py's passes did) still inserts: the packed arrays are
    sent as arrays, not as bytea."""
    with session_scope(pg_db.factory) as session:
        model = model_service.upsert_model(
            session=session, model_id="m", body=ModelIn(window="1h"), now=datetime.now(UTC)
        )[0]
        version = model.updated_at.isoformat()
    script = f"""
import sys
from datetime import datetime
from sqlalchemy import text
from app.config import load_settings
from app.db import create_engine_for, make_sessionmaker, session_scope
engine = create_engine_for(load_settings(database_url={pg_db.url!r}))
with engine.connect() as conn:  # opened and pooled first
    conn.execute(text("SELECT 1"))
assert "app.ingestion.pg_arrays" not in sys.modules
from app.ingestion import bulk
rows = bulk.PredictionRows(["a", "b"], [1, 2], [0, 0], [0.5, 0.25], [None, None],
                           ["", ""], [None, None])
with session_scope(make_sessionmaker(engine)) as session:
    print(bulk.insert_predictions(session=session, model_id="m",
          model_version=datetime.fromisoformat({version!r}), rows=rows, received_us=0))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert pg_db.count("predictions") == 2
