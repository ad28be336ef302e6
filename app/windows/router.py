"""HTTP for the metric history."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import StringConstraints

from app.api import pagination, responses
from app.api.deps import Read, ReadSessionDep
from app.api.errors import query_error
from app.json_types import SEGMENT_KEY_RE, Timestamp, VersionText
from app.registry import service as model_service
from app.registry.router import ModelId
from app.windows import history_json, service
from app.windows.schemas import HistoryOut

SegmentFilter = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}:[^\x00]+$", max_length=400)
]

router = APIRouter(prefix="/v1/models", tags=["metrics"], responses=responses.COMMON)


def epoch_seconds(ts: datetime | None) -> int | None:
    if ts is None:
        return None
    # Window starts are whole seconds, so start >= ceil(t) <=> start >= t (likewise end).
    return math.ceil(ts.timestamp())


def _segments(raw: list[str]) -> list[tuple[str, str]]:
    out = []
    for item in raw:
        key, sep, value = item.partition(":")
        if not sep or not value or not SEGMENT_KEY_RE.fullmatch(key):
            raise query_error(
                "segment",
                f"segment must look like key:value with key [A-Za-z0-9_.-], got {item!r}",
            )
        out.append((key, value))
    return out


@router.get(
    "/{model_id}/metrics",
    response_model=HistoryOut,
    dependencies=[Read],
    responses=responses.NOT_FOUND,
)
def get_metrics(
    model_id: ModelId,
    session: ReadSessionDep,
    start: Annotated[Timestamp | None, Query(description="RFC 3339, inclusive")] = None,
    end: Annotated[Timestamp | None, Query(description="RFC 3339, exclusive")] = None,
    model_version: Annotated[VersionText | None, Query()] = None,
    segment: Annotated[
        list[SegmentFilter] | None, Query(description="key:value, repeatable (AND)")
    ] = None,
    limit: pagination.Limit = pagination.DEFAULT_LIMIT,
    cursor: pagination.Cursor = None,
) -> Response:
    """Windows whose start is in [start, end), oldest first (none when end <= start).

    With model_version and/or segment filters the same fields cover the matching
    predictions only. A single version or segment is read from precomputed slices (the
    top LOSSMON_SLICE_TOP_N values per window; others are computed on demand);
    combinations are computed on demand. At most `limit` windows per page: while
    `next_cursor` is not null, pass it as `cursor` (with the same other parameters)."""
    model = model_service.require_model(session=session, model_id=model_id)
    start_s, end_s = epoch_seconds(start), epoch_seconds(end)
    if cursor is not None:
        # The cursor is the last window start served: continue strictly after it.
        resume = pagination.decode_int("window", cursor) + 1
        start_s = resume if start_s is None else max(start_s, resume)
    segments = _segments(segment or [])
    if start_s is not None and end_s is not None and start_s >= end_s:
        fragments: list[history_json.Fragment] = []  # an empty range holds no window
    elif model_version is None and not segments:
        fragments = service.history(
            session=session, model=model, start=start_s, end=end_s, limit=limit + 1
        )
    else:
        fragments = service.filtered_history(
            session=session,
            model=model,
            start=start_s,
            end=end_s,
            model_version=model_version,
            segments=segments,
            now=datetime.now(UTC),
        )
    next_cursor = None
    if len(fragments) > limit:
        fragments = fragments[:limit]
        next_cursor = pagination.encode("window", fragments[-1][0])
    # Rendered directly (see history_json); the body is exactly a HistoryOut.
    return Response(
        content=history_json.render(
            model_id=model.id,
            window=model.window,
            model_version=model_version,
            segments=[f"{k}:{v}" for k, v in segments],
            fragments=fragments,
            next_cursor=next_cursor,
        ),
        media_type="application/json",
    )
