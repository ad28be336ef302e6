"""Reads joined (prediction LEFT JOIN actual) rows into numpy arrays.

Uses the DBAPI cursor directly: building a Row object per prediction would cost more
than the log-loss math itself on large windows (bench/compute.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from app.db import is_postgres


@dataclass(frozen=True, slots=True)
class JoinedRows:
    window_starts: np.ndarray  # int64
    scores: np.ndarray  # float64 (binary); empty for multiclass
    labels: np.ndarray  # float64, NaN = no actual yet (multiclass: class index)
    weights: np.ndarray  # float64, NaN = no actual yet
    # multiclass: (n, K) float64 in the model's class order; None for binary
    probabilities: np.ndarray | None = None
    # with_slices only: per row, model_version and the segments JSON text (None: none)
    versions: Sequence[str] | None = None
    segments: Sequence[str | None] | None = None

    def __len__(self) -> int:
        return int(self.window_starts.size)

    def take(self, index: np.ndarray) -> JoinedRows:
        """The rows at `index` (a boolean mask or integer positions), numeric arrays only."""
        return JoinedRows(
            window_starts=self.window_starts[index],
            scores=self.scores[index] if self.probabilities is None else self.scores,
            labels=self.labels[index],
            weights=self.weights[index],
            probabilities=None if self.probabilities is None else self.probabilities[index],
        )


def _select(pg: bool, *, multiclass: bool, with_slices: bool, on_actuals: str) -> str:
    # Cast JSON to text on PostgreSQL: psycopg would otherwise parse every row's JSON
    # into Python objects; the text is parsed once per distinct value (or in one call).
    cast = "::text" if pg else ""
    value = f"p.probabilities{cast}" if multiclass else "p.score"
    extra = f", p.model_version, p.segments{cast}" if with_slices else ""
    # The actuals side is restricted by its own (model_id, window_start) index with the
    # same window bounds as the predictions: the planner then joins the two windows'
    # rows, never a scan of every actual of the model (issue 13: a hash join over all
    # actuals made a late label cost grow with history).
    return (
        f"SELECT p.window_start, a.label, a.weight, {value}{extra} FROM predictions p "
        "LEFT JOIN actuals a ON a.model_id = {ph} AND a.prediction_id = p.prediction_id "
        f"AND a.window_start = p.window_start {on_actuals}"
        "WHERE p.model_id = {ph}"
    )


def _window_bounds(
    pg: bool,
    alias: str,
    *,
    window_starts: Sequence[int] | None,
    start: int | None,
    end: int | None,
) -> tuple[list[str], list[object]]:
    """SQL conditions (and their parameters) on `alias`.window_start."""
    ph = "%s" if pg else "?"
    sql: list[str] = []
    params: list[object] = []
    if window_starts is not None:
        if pg:
            sql.append(f"AND {alias}.window_start = ANY(%b::bigint[])")
            params.append([int(w) for w in window_starts])
        else:
            sql.append(f"AND {alias}.window_start IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([int(w) for w in window_starts]))
    if start is not None:
        sql.append(f"AND {alias}.window_start >= {ph}")
        params.append(start)
    if end is not None:
        sql.append(f"AND {alias}.window_start < {ph}")
        params.append(end)
    return sql, params


def parse_probabilities(texts: Sequence[str], n: int) -> np.ndarray:
    """(n, K) probabilities from each row's JSON list text.

    One json.loads over the joined rows runs in C; a loads() per row would not."""
    return np.array(json.loads("[" + ",".join(texts) + "]"), dtype=np.float64).reshape(n, -1)


def joined_sql(
    *,
    pg: bool,
    model_id: str,
    window_starts: Sequence[int] | None,
    start: int | None,
    end: int | None,
    model_version: str | None,
    segments: Sequence[tuple[str, str]],
    multiclass: bool,
    with_slices: bool,
) -> tuple[str, tuple[object, ...]]:
    """The joined read as one statement and its parameters (bench/scale.py EXPLAINs it)."""
    ph = "%s" if pg else "?"
    on_actuals, actual_params = _window_bounds(
        pg, "a", window_starts=window_starts, start=start, end=end
    )
    on_predictions, params = _window_bounds(
        pg, "p", window_starts=window_starts, start=start, end=end
    )
    select = _select(
        pg, multiclass=multiclass, with_slices=with_slices, on_actuals=" ".join(on_actuals) + " "
    )
    sql = [select.format(ph=ph), *on_predictions]
    params = [model_id, *actual_params, model_id, *params]
    if model_version is not None:
        sql.append(f"AND p.model_version = {ph}")
        params.append(model_version)
    for key, value in segments:
        # Keys are validated to [A-Za-z0-9_.-] at ingest, values are bound parameters.
        if pg:
            sql.append("AND (p.segments ->> %s) = %s")
            params.extend([key, value])
        else:
            sql.append("AND json_extract(p.segments, ?) = ?")
            params.extend([f'$."{key}"', value])
    return " ".join(sql), tuple(params)


def read_joined(
    *,
    session: Session,
    model_id: str,
    window_starts: Sequence[int] | None = None,
    start: int | None = None,
    end: int | None = None,
    model_version: str | None = None,
    segments: Sequence[tuple[str, str]] = (),
    multiclass: bool = False,
    with_slices: bool = False,
) -> JoinedRows:
    pg = is_postgres(session)
    sql, params = joined_sql(
        pg=pg,
        model_id=model_id,
        window_starts=window_starts,
        start=start,
        end=end,
        model_version=model_version,
        segments=segments,
        multiclass=multiclass,
        with_slices=with_slices,
    )
    cur: Any = session.connection().connection.cursor()
    try:
        if pg:
            # No nested loop: with stale or missing statistics (a table just bulk
            # loaded) the planner may loop over one window's actuals per prediction.
            # A hash or merge join of the two window-bounded sides costs what the
            # windows hold, whatever the history. Never a prepared statement either:
            # its generic plan (psycopg prepares after 5 runs) cannot see how few
            # windows are asked for and may scan everything. No JIT either: the plan's
            # cost grows with the history's statistics, so past jit_above_cost the
            # server compiles the query on every execution, which costs more than
            # reading the window (EXPLAIN ANALYZE, one 50k-row window at 10M rows of
            # history: 102 ms with JIT, 41 ms without; at 1M no JIT, 33 ms).
            cur.execute("SET LOCAL enable_nestloop = off")
            cur.execute("SET LOCAL jit = off")
            cur.execute(sql, params, prepare=False)
            rows = cur.fetchall()
            cur.execute("RESET enable_nestloop")
            cur.execute("RESET jit")
        else:
            cur.execute(sql, params)
            rows = cur.fetchall()
    finally:
        cur.close()
    n = len(rows)
    empty = np.empty(0, dtype=np.float64)
    if not rows:
        return JoinedRows(
            np.empty(0, dtype=np.int64),
            empty,
            empty.copy(),
            empty.copy(),
            probabilities=np.empty((0, 0)) if multiclass else None,
            versions=[] if with_slices else None,
            segments=[] if with_slices else None,
        )
    columns = list(zip(*rows, strict=True))
    numeric = np.array(columns[:3], dtype=np.float64)  # None -> NaN for unlabeled rows
    probabilities = parse_probabilities(columns[3], n) if multiclass else None
    return JoinedRows(
        window_starts=numeric[0].astype(np.int64),
        scores=empty if multiclass else np.array(columns[3], dtype=np.float64),
        labels=numeric[1],
        weights=numeric[2],
        probabilities=probabilities,
        versions=columns[4] if with_slices else None,
        segments=columns[5] if with_slices else None,
    )
