"""app/ingestion/pg_arrays.py: arrays packed by hand read back in PostgreSQL as the same
values psycopg's own list adaptation gives (PostgreSQL only)."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from app.ingestion import pg_arrays
from tests.conftest import Db

TEXTS: list[list[str | None]] = [
    ["a", "b"],
    ["", "é", "日本語", "tab\there", 'quote" and \\ backslash', "x" * 300],
    ["a", None, "", None],
    [None],
    [],
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
