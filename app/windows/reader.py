"""Reads joined (prediction LEFT JOIN actual) rows into numpy arrays.

Uses the DBAPI cursor directly: building a Row object per prediction would cost more
than the log-loss math itself on large windows (bench/compute.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy.orm import Session

from app.db import is_postgres


@dataclass(frozen=True, slots=True)
class JoinedRows:
    window_starts: np.ndarray  # int64
    scores: np.ndarray  # float64
    labels: np.ndarray  # float64, NaN = no actual yet
    weights: np.ndarray  # float64, NaN = no actual yet


_SELECT = (
    "SELECT p.window_start, p.score, a.label, a.weight FROM predictions p "
    "LEFT JOIN actuals a ON a.model_id = p.model_id AND a.prediction_id = p.prediction_id "
    "WHERE p.model_id = {ph}"
)


def read_joined(
    *,
    session: Session,
    model_id: str,
    window_starts: Sequence[int] | None = None,
    start: int | None = None,
    end: int | None = None,
    model_version: str | None = None,
    segments: Sequence[tuple[str, str]] = (),
) -> JoinedRows:
    pg = is_postgres(session)
    ph = "%s" if pg else "?"
    sql = [_SELECT.format(ph=ph)]
    params: list[object] = [model_id]
    if window_starts is not None:
        if pg:
            sql.append("AND p.window_start = ANY(%b::bigint[])")
            params.append([int(w) for w in window_starts])
        else:
            sql.append("AND p.window_start IN (SELECT value FROM json_each(?))")
            params.append(json.dumps([int(w) for w in window_starts]))
    if start is not None:
        sql.append(f"AND p.window_start >= {ph}")
        params.append(start)
    if end is not None:
        sql.append(f"AND p.window_start < {ph}")
        params.append(end)
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
    cur = session.connection().connection.cursor()
    try:
        cur.execute(" ".join(sql), tuple(params))
        rows = cur.fetchall()
    finally:
        cur.close()
    if not rows:
        empty = np.empty(0, dtype=np.float64)
        return JoinedRows(np.empty(0, dtype=np.int64), empty, empty.copy(), empty.copy())
    arr = np.array(rows, dtype=np.float64)  # None -> NaN for unlabeled rows
    return JoinedRows(
        window_starts=arr[:, 0].astype(np.int64),
        scores=arr[:, 1],
        labels=arr[:, 2],
        weights=arr[:, 3],
    )
