"""Dialect-specific bulk statements for the ingest path.

Array parameters go as %b (binary), packed by pg_arrays.py: psycopg's text quoting
per element cost more than the INSERT itself, and its binary dumping of lists still ~26%
of the server's CPU (bench/ingest.py).

Why hand-written SQL: SQLAlchemy's executemany/insertmanyvalues builds a multi-VALUES
statement per page of rows; PostgreSQL's `INSERT ... SELECT FROM unnest(arrays)` sends
one statement with one array per column (measured in bench/ingest.py). On SQLite,
`executemany` of a prepared statement is a C loop inside one transaction, and binds
doubles exactly (a JSON round trip through SQLite's parser might not).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import numpy as np
import psycopg
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import SET_LOCAL_LOCK_TIMEOUT, is_postgres
from app.ingestion import pg_arrays
from app.ingestion.timestamps import Int64s
from app.registry.models import MonitoredModel
from app.windows import dirty


@dataclass(frozen=True, slots=True)
class PredictionRows:
    """Column arrays of one batch, deduplicated, sorted by prediction_id."""

    prediction_ids: list[str]
    ts_us: list[int] | Int64s  # numpy when the batch's timestamps were parsed as one
    window_starts: list[int] | Int64s
    scores: list[float | None]
    probabilities: list[str | None]  # JSON list in the model's class order
    model_versions: list[str]
    segments: list[str | None]  # JSON text


@dataclass(frozen=True, slots=True)
class ActualRows:
    prediction_ids: list[str]
    labels: list[int]
    weights: list[float]
    ts_us: list[int]
    pending: list[bool]
    window_starts: list[int | None]  # the matched prediction's window; None while pending


def _cursor(session: Session) -> Any:
    return session.connection().connection.cursor()


def _packed_cursor(session: Session) -> Any:
    """A PostgreSQL cursor that sends pg_arrays' packed types as arrays (prepared on the
    connection first: a cursor copies its connection's adapters when it is made)."""
    dbapi = session.connection().connection
    pg_arrays.prepare(cast(psycopg.Connection[Any], dbapi.driver_connection))
    return dbapi.cursor()


# Columns that are often one value for the whole batch (a producer logs one model
# version and segment set per batch; a binary model sends no probabilities, a multiclass
# one no score). Such a column goes as ONE scalar parameter instead of an array of
# copies: nothing to pack per row on our side, one array less for PostgreSQL to unnest.
# name -> (SQL element type, cast applied to the stored value)
_VARYING: dict[str, tuple[str, str]] = {
    "score": ("float8", ""),
    "probs": ("text", "::json"),
    "mv": ("text", ""),
    "seg": ("text", "::json"),
}


def _pg_unnest(arrays: frozenset[str]) -> tuple[str, str]:
    """(select list of the row values, FROM unnest(...) AS u(...)) for the given array
    columns; the other varying columns are scalar parameters of the same name."""
    names = ["pid", "ts", "ws"] + [c for c in _VARYING if c in arrays]
    types = ["text", "bigint", "bigint"] + [_VARYING[c][0] for c in _VARYING if c in arrays]
    values = ["u.pid", "u.ts", "u.ws"] + [
        f"u.{c}{cast}" if c in arrays else f"%({c})s::{typ}{cast}"
        for c, (typ, cast) in _VARYING.items()
    ]
    unnest = ", ".join(f"%({n})b::{t}[]" for n, t in zip(names, types, strict=True))
    return ", ".join(values), f"unnest({unnest}) AS u({', '.join(names)})"


@functools.cache
def pg_insert_predictions_sql(arrays: frozenset[str]) -> str:
    """The bare insert (bench/ingest.py runs it through psycopg as its reference, with
    the parameters of `pg_prediction_params`). Parameters: those, plus model_id and
    received_us."""
    values, source = _pg_unnest(arrays)
    return f"""
INSERT INTO predictions (model_id, prediction_id, ts_us, window_start, score,
                         probabilities, model_version, segments, received_us)
SELECT %(model_id)s, {values}, %(received_us)s
FROM {source}
ON CONFLICT (model_id, prediction_id) DO NOTHING
RETURNING window_start
"""


# What the service runs on PostgreSQL: the insert above, guarded by the model version the
# caller validated against, plus the window change log, in one statement (one round
# trip). `FOR KEY SHARE` re-reads the model row at its newest version and waits for a
# concurrent PUT holding it: a model changed meanwhile inserts nothing (model_current
# false) instead of storing rows of the old shape.
@functools.cache
def pg_ingest_predictions_sql(arrays: frozenset[str]) -> str:
    values, source = _pg_unnest(arrays)
    return f"""
WITH guard AS (
    SELECT 1 FROM models WHERE id = %(model_id)s AND updated_at = %(version)s FOR KEY SHARE
), ins AS (
    INSERT INTO predictions (model_id, prediction_id, ts_us, window_start, score,
                             probabilities, model_version, segments, received_us)
    SELECT %(model_id)s, {values}, %(received_us)s
    FROM {source}
    WHERE EXISTS (SELECT 1 FROM guard)
    ON CONFLICT (model_id, prediction_id) DO NOTHING
    RETURNING window_start
), changes AS (
    INSERT INTO window_changes (model_id, window_start)
    SELECT DISTINCT %(model_id)s, window_start FROM ins
)
SELECT (SELECT count(*) FROM ins), EXISTS (SELECT 1 FROM guard)
"""


def _constant(column: Sequence[Any]) -> bool:
    # list.count compares in C (identity first): ~10 us for 1,000 equal strings.
    return column.count(column[0]) == len(column)


def _varying_columns(rows: PredictionRows) -> dict[str, list[Any]]:
    return {
        "score": rows.scores,
        "probs": rows.probabilities,
        "mv": rows.model_versions,
        "seg": rows.segments,
    }


def pg_array_columns(rows: PredictionRows) -> frozenset[str]:
    """The varying columns that go as arrays; the others have one value on every row
    and go as one scalar parameter (scores only when all NULL: == would take -0.0 for
    0.0)."""
    return frozenset(
        name
        for name, column in _varying_columns(rows).items()
        if not (column and _constant(column) and (name != "score" or column[0] is None))
    )


def pg_prediction_params(rows: PredictionRows) -> tuple[frozenset[str], dict[str, Any]]:
    """(pg_array_columns, the parameters) for the statements above, arrays packed in
    binary (pg_arrays.py)."""
    arrays = pg_array_columns(rows)
    params: dict[str, Any] = {
        "pid": pg_arrays.text_array(rows.prediction_ids),
        "ts": pg_arrays.int8_array(rows.ts_us),
        "ws": pg_arrays.int8_array(rows.window_starts),
    }
    for name, column in _varying_columns(rows).items():
        if name not in arrays:
            params[name] = column[0]
        elif name == "score":
            params[name] = pg_arrays.float8_array(column)
        else:
            params[name] = pg_arrays.text_array(column)
    return arrays, params


def insert_predictions(
    *,
    session: Session,
    model_id: str,
    model_version: datetime,
    rows: PredictionRows,
    received_us: int,
) -> int | None:
    """Insert, skipping stored ids, and log the windows that changed. Returns the rows
    inserted, or None (nothing written) when the model's `updated_at` is no longer
    `model_version`: the rows were validated against a shape that changed.

    On PostgreSQL this is ONE statement, and the API runs it in autocommit
    (insert_predictions_on): keep it one statement, or its parts stop being atomic."""
    if is_postgres(session):
        sql, params = _pg_ingest(model_id, model_version, rows, received_us)
        cur = _packed_cursor(session)
        try:
            cur.execute(sql, params)
            return _pg_inserted(cur.fetchone())
        finally:
            cur.close()
    # SQLite: the BEGIN IMMEDIATE transaction holds the write lock, so the model cannot
    # change between this check and the insert.
    stored = session.scalar(select(MonitoredModel.updated_at).where(MonitoredModel.id == model_id))
    if stored != model_version:
        return None
    cur = _cursor(session)
    try:
        dbapi = session.connection().connection.dbapi_connection
        before = dbapi.total_changes  # type: ignore[union-attr]
        cur.executemany(
            """
            INSERT INTO predictions (model_id, prediction_id, ts_us, window_start, score,
                                     probabilities, model_version, segments, received_us)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (model_id, prediction_id) DO NOTHING
            """,
            [
                (model_id, pid, ts, ws, sc, pr, mv, seg, received_us)
                for pid, ts, ws, sc, pr, mv, seg in zip(
                    rows.prediction_ids,
                    _ints(rows.ts_us),  # sqlite3 binds Python ints only
                    _ints(rows.window_starts),
                    rows.scores,
                    rows.probabilities,
                    rows.model_versions,
                    rows.segments,
                    strict=True,
                )
            ],
        )
        inserted = int(dbapi.total_changes - before)  # type: ignore[union-attr]
    finally:
        cur.close()
    if inserted:
        # executemany cannot RETURNING: a duplicate's window is logged too, which only
        # costs one recompute of it.
        dirty.mark_dirty(
            session=session, model_id=model_id, window_starts=_ints(rows.window_starts)
        )
    return inserted


def _ints(column: list[int] | Int64s) -> list[int]:
    return column.tolist() if isinstance(column, np.ndarray) else column


async def insert_predictions_on(
    conn: psycopg.AsyncConnection[Any],
    *,
    model_id: str,
    model_version: datetime,
    rows: PredictionRows,
    received_us: int,
    lock_timeout_ms: int | None,
) -> int | None:
    """insert_predictions on PostgreSQL, awaited on an async connection in autocommit
    (app/pg_statement_pool.py): the same one statement. `lock_timeout_ms` (a request
    whose deadline was cut, app/db.py cut_lock_timeout_ms) goes in one pipeline with it,
    in the statement's own implicit transaction: still one round trip."""
    sql, params = _pg_ingest(model_id, model_version, rows, received_us)
    if lock_timeout_ms is None:
        cur = await conn.execute(sql, params)
    else:
        async with conn.pipeline():
            await conn.execute(SET_LOCAL_LOCK_TIMEOUT, (str(lock_timeout_ms),))
            cur = await conn.execute(sql, params)
    return _pg_inserted(await cur.fetchone())


def _pg_ingest(
    model_id: str, model_version: datetime, rows: PredictionRows, received_us: int
) -> tuple[str, dict[str, Any]]:
    """pg_ingest_predictions_sql and its parameters, for both inserts above."""
    arrays, params = pg_prediction_params(rows)
    params.update(model_id=model_id, version=model_version, received_us=received_us)
    return pg_ingest_predictions_sql(arrays), params


def _pg_inserted(row: Any) -> int | None:
    """The statement's one row (inserted count, model current) as insert_predictions
    answers it."""
    inserted, current = row
    return int(inserted) if current else None


def find_predictions(
    *, session: Session, model_id: str, prediction_ids: Sequence[str]
) -> dict[str, int]:
    """prediction_id -> window_start for the ids that have a stored prediction."""
    cur = _cursor(session)
    try:
        if is_postgres(session):
            cur.execute(
                "SELECT prediction_id, window_start FROM predictions "
                "WHERE model_id = %s AND prediction_id = ANY(%b::text[])",
                (model_id, list(prediction_ids)),
            )
        else:
            cur.execute(
                "SELECT prediction_id, window_start FROM predictions "
                "WHERE model_id = ? AND prediction_id IN (SELECT value FROM json_each(?))",
                (model_id, json.dumps(list(prediction_ids))),
            )
        return {pid: ws for pid, ws in cur.fetchall()}
    finally:
        cur.close()


def upsert_actuals(*, session: Session, model_id: str, rows: ActualRows, received_us: int) -> None:
    """Insert or replace (last write wins: label corrections)."""
    cur = _cursor(session)
    try:
        if is_postgres(session):
            cur.execute(
                """
                INSERT INTO actuals (model_id, prediction_id, label, weight, ts_us,
                                     received_us, pending, window_start)
                SELECT %s, u.pid, u.label, u.weight, u.ts, %s, u.pending, u.ws
                FROM unnest(%b::text[], %b::int[], %b::float8[], %b::bigint[], %b::bool[],
                            %b::bigint[])
                     AS u(pid, label, weight, ts, pending, ws)
                ON CONFLICT (model_id, prediction_id) DO UPDATE SET
                    label = EXCLUDED.label, weight = EXCLUDED.weight, ts_us = EXCLUDED.ts_us,
                    received_us = EXCLUDED.received_us, pending = EXCLUDED.pending,
                    window_start = EXCLUDED.window_start
                """,
                (
                    model_id,
                    received_us,
                    rows.prediction_ids,
                    rows.labels,
                    rows.weights,
                    rows.ts_us,
                    rows.pending,
                    rows.window_starts,
                ),
            )
            return
        cur.executemany(
            """
            INSERT INTO actuals (model_id, prediction_id, label, weight, ts_us, received_us,
                                 pending, window_start)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT (model_id, prediction_id) DO UPDATE SET
                label = excluded.label, weight = excluded.weight, ts_us = excluded.ts_us,
                received_us = excluded.received_us, pending = excluded.pending,
                window_start = excluded.window_start
            """,
            [
                (model_id, pid, lab, w, ts, received_us, int(p), ws)
                for pid, lab, w, ts, p, ws in zip(
                    rows.prediction_ids,
                    rows.labels,
                    rows.weights,
                    rows.ts_us,
                    rows.pending,
                    rows.window_starts,
                    strict=True,
                )
            ],
        )
    finally:
        cur.close()
