"""Precomputed slice metrics: computed with their window, replaced with it, read back
for filtered history queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from app.metrics import WindowStats
from app.registry.models import MonitoredModel
from app.windows import history_json, slices
from app.windows.models import SliceMetric
from app.windows.reader import JoinedRows
from app.windows.values import compute_stats, metric_values

_INSERT_CHUNK = 1000


def slice_values(
    *,
    rows: JoinedRows,
    model: MonitoredModel,
    top_n: int,
    now: datetime,
    pinned: Collection[tuple[str, str, str]] = (),
    window_stats: Mapping[int, WindowStats] | None = None,
) -> list[dict[str, object]]:
    """Metric rows of every precomputed slice of the windows in `rows`.

    `window_stats` (the whole windows' stats) is reused for a dimension whose single
    value every row carries (e.g. an unversioned model): that slice IS the window.
    """
    if rows.versions is None or rows.segments is None:
        raise ValueError("slice_values needs rows read with_slices=True")
    out: list[dict[str, object]] = []
    for dimension in slices.dimensions(rows.versions, rows.segments):
        always = frozenset(v for k, key, v in pinned if (k, key) == (dimension.kind, dimension.key))
        groups = slices.group(dimension, rows.window_starts, top_n, always)
        covers_all = len(dimension.names) == 1 and groups.rows.size == len(rows)
        if covers_all and window_stats is not None:
            # One slot per window (m = 1): key w_index * 2 + 0.
            stats = {2 * i: window_stats[int(ws)] for i, ws in enumerate(groups.windows)}
        else:
            stats = compute_stats(rows.take(groups.rows), model.clip_eps, groups.group_keys)
        for group_key, st in stats.items():
            window_start, other, value = groups.decode(group_key)
            values = metric_values(
                model_id=model.id,
                window_start=window_start,
                window_seconds=model.window_seconds,
                stats=st,
                now=now,
                classes=model.classes,
            )
            values.update(kind=dimension.kind, key=dimension.key, other=other, value=value)
            out.append(values)
    return out


def replace_slices(
    *, session: Session, windows: Sequence[tuple[str, int]], values: list[dict[str, object]]
) -> None:
    """Delete the windows' slice rows and insert their new ones (top N can change)."""
    by_model: dict[str, list[int]] = defaultdict(list)
    for model_id, window_start in windows:
        by_model[model_id].append(window_start)
    for model_id, starts in sorted(by_model.items()):
        session.execute(
            delete(SliceMetric).where(
                SliceMetric.model_id == model_id, SliceMetric.window_start.in_(sorted(starts))
            )
        )
    # Multi-row VALUES statements: an executemany of ~30k rows ran one statement per row
    # on psycopg (bench/compute.py). 26 columns x 1000 rows stays under both databases'
    # bound-parameter limits (SQLite 32,766; PostgreSQL 65,535).
    for i in range(0, len(values), _INSERT_CHUNK):
        session.execute(insert(SliceMetric).values(values[i : i + _INSERT_CHUNK]))


def parse_slice(
    model_version: str | None, segments: Sequence[tuple[str, str]]
) -> tuple[str, str, str] | None:
    """(kind, key, value) when the filter is a single precomputed dimension."""
    if model_version is not None and not segments:
        return slices.VERSION, "", model_version
    if model_version is None and len(segments) == 1:
        return slices.SEGMENT, segments[0][0], segments[0][1]
    return None


def read_slice(
    *,
    session: Session,
    model_id: str,
    kind: str,
    key: str,
    value: str,
    start: int | None,
    end: int | None,
) -> tuple[list[history_json.Fragment], list[int]]:
    """The slice's stored windows (as JSON fragments), and the windows where its value
    may hide in `other` (those have an other row for the dimension and no row of the
    value's own): they need computing on demand."""
    dimension = [
        SliceMetric.model_id == model_id,
        SliceMetric.kind == kind,
        SliceMetric.key == key,
    ]
    if start is not None:
        dimension.append(SliceMetric.window_start >= start)
    if end is not None:
        dimension.append(SliceMetric.window_start < end)
    own = history_json.read_fragments(
        session=session,
        table=SliceMetric,
        where=[*dimension, SliceMetric.other.is_(False), SliceMetric.value == value],
    )
    with_other = session.scalars(
        select(SliceMetric.window_start).where(*dimension, SliceMetric.other.is_(True))
    ).all()
    maybe = sorted(set(with_other) - {ws for ws, _ in own})
    return own, maybe
