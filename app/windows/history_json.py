"""The metric history rendered straight to JSON.

A history request returns hundreds of windows, each with a 10-bin reliability table.
Loading them as ORM objects, parsing their JSON columns, re-validating them with
Pydantic and serialising again cost ~130 ms for 30 days of hourly windows
(bench/compute.py); here the stored JSON columns are read as text and spliced in
unparsed, and each window's scalars go through one json.dumps. The output has exactly
the fields and values of `WindowOut` (the documented response model).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Text, cast, select
from sqlalchemy.orm import Session

from app.windows.models import SliceMetric, WindowMetric
from app.windows.record import JSON_FIELDS, SCALAR_FIELDS

Fragment = tuple[int, str]  # (window start, the window's JSON object)


def iso_seconds(epoch_s: int) -> str:
    """RFC 3339 UTC text of whole epoch seconds, always a 4-digit year."""
    # Not strftime("%Y"): glibc writes year 5 as "5", and RFC 3339 needs 4 digits.
    t = time.gmtime(epoch_s)
    return (
        f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
        f"T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}Z"
    )


def _iso(ts: datetime) -> str:
    # The same text Pydantic writes for an aware UTC datetime.
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _fragment(
    window_start: int, window_end: int, scalars: dict[str, Any], json_texts: Sequence[str]
) -> Fragment:
    head = {"start": iso_seconds(window_start), "end": iso_seconds(window_end), **scalars}
    body = json.dumps(head, allow_nan=False, separators=(",", ":"))[:-1]
    tail = "".join(f',"{name}":{text}' for name, text in zip(JSON_FIELDS, json_texts, strict=True))
    return window_start, body + tail + "}"


def fragment_from_values(values: dict[str, Any]) -> Fragment:
    """A window computed on demand, or a stored row (the dict record.stored_values()
    and record.row_values() build)."""
    scalars = {f: values[f] for f in SCALAR_FIELDS}
    scalars["computed_at"] = _iso(values["computed_at"])
    texts = [json.dumps(values[f], allow_nan=False, separators=(",", ":")) for f in JSON_FIELDS]
    return _fragment(int(values["window_start"]), int(values["window_end"]), scalars, texts)


def read_fragments(
    *,
    session: Session,
    table: type[WindowMetric] | type[SliceMetric],
    where: Sequence[ColumnElement[bool]],
    limit: int | None = None,
) -> list[Fragment]:
    """Stored windows matching `where`, oldest first (at most `limit`), as JSON fragments."""
    columns = [
        table.window_start,
        table.window_end,
        table.computed_at,
        *(getattr(table, f) for f in SCALAR_FIELDS),
        *(cast(getattr(table, f), Text) for f in JSON_FIELDS),
    ]
    query = select(*columns).where(*where).order_by(table.window_start)
    if limit is not None:
        query = query.limit(limit)
    rows = session.execute(query).all()
    n = len(SCALAR_FIELDS)
    out = []
    for row in rows:
        scalars = dict(zip(SCALAR_FIELDS, row[3 : 3 + n], strict=True))
        scalars["computed_at"] = _iso(row[2])
        texts = [t if t is not None else "null" for t in row[3 + n :]]
        out.append(_fragment(row[0], row[1], scalars, texts))
    return out


def render(
    *,
    model_id: str,
    window: str,
    model_version: str | None,
    segments: Sequence[str],
    fragments: Sequence[Fragment],
    next_cursor: str | None = None,
) -> bytes:
    head = json.dumps(
        {
            "model_id": model_id,
            "window": window,
            "model_version": model_version,
            "segments": list(segments),
        },
        separators=(",", ":"),
    )[:-1]
    tail = json.dumps(next_cursor)
    windows = ",".join(f for _, f in fragments)
    return (head + ',"windows":[' + windows + '],"next_cursor":' + tail + "}").encode()
