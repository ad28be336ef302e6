"""Dialect-specific bulk statements for the ingest path.

Array parameters go as %b (binary): psycopg then skips per-element text quoting, which
cost more than the INSERT itself (bench/ingest.py).

Why hand-written SQL: SQLAlchemy's executemany/insertmanyvalues builds a multi-VALUES
statement per page of rows; PostgreSQL's `INSERT ... SELECT FROM unnest(arrays)` sends
one statement with one array per column (measured in bench/ingest.py). On SQLite,
`executemany` of a prepared statement is a C loop inside one transaction, and binds
doubles exactly (a JSON round trip through SQLite's parser might not).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.db import is_postgres

# Parameters: model_id, received_us, then one array per column (bench/ingest.py runs
# this same statement through psycopg as its reference).
PG_INSERT_PREDICTIONS = """
INSERT INTO predictions (model_id, prediction_id, ts_us, window_start, score,
                         probabilities, model_version, segments, received_us)
SELECT %s, u.pid, u.ts, u.ws, u.score, u.probs::json, u.mv, u.seg::json, %s
FROM unnest(%b::text[], %b::bigint[], %b::bigint[], %b::float8[], %b::text[],
            %b::text[], %b::text[]) AS u(pid, ts, ws, score, probs, mv, seg)
ON CONFLICT (model_id, prediction_id) DO NOTHING
RETURNING window_start
"""


@dataclass(frozen=True, slots=True)
class PredictionRows:
    """Column arrays of one batch, deduplicated, sorted by prediction_id."""

    prediction_ids: list[str]
    ts_us: list[int]
    window_starts: list[int]
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


def insert_predictions(
    *, session: Session, model_id: str, rows: PredictionRows, received_us: int
) -> tuple[int, list[int]]:
    """Insert, skipping stored ids. Returns (rows inserted, windows to mark dirty)."""
    cur = _cursor(session)
    try:
        if is_postgres(session):
            cur.execute(
                PG_INSERT_PREDICTIONS,
                (
                    model_id,
                    received_us,
                    rows.prediction_ids,
                    rows.ts_us,
                    rows.window_starts,
                    rows.scores,
                    rows.probabilities,
                    rows.model_versions,
                    rows.segments,
                ),
            )
            inserted_windows = [r[0] for r in cur.fetchall()]
            return len(inserted_windows), inserted_windows
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
                    rows.ts_us,
                    rows.window_starts,
                    rows.scores,
                    rows.probabilities,
                    rows.model_versions,
                    rows.segments,
                    strict=True,
                )
            ],
        )
        inserted = dbapi.total_changes - before  # type: ignore[union-attr]
        # SQLite cannot RETURNING from executemany; re-marking a duplicate's window
        # only costs one recompute of it, so mark every window of the batch.
        return inserted, rows.window_starts
    finally:
        cur.close()


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
