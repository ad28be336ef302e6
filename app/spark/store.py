"""Spark's windows into the window store: the same rows, conversions and slice table as
the compute pass, marked `source = "spark"`.

Storing a run replaces the model's spark windows in the run's range (a re-run is
idempotent; a window that lost all its predictions in the files is removed) and flags
the model's monitors for evaluation in the same transaction, as the compute pass does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.alerting import service as alerting_service
from app.metrics.window_stats import WindowSums
from app.metrics.window_stats import finalise as finalise_sums
from app.registry.models import MonitoredModel
from app.spark.finalise import window_sums
from app.windows import service as window_service
from app.windows import slice_store
from app.windows.models import SPARK, WindowMetric
from app.windows.values import metric_values

WINDOW = "window"
# Rows per INSERT: ~27 columns x 1000 stays under SQLite's 32,766 bound parameters.
_CHUNK = 1000


@dataclass(frozen=True)
class StoreReport:
    windows: int
    slices: int
    removed: int


@dataclass(frozen=True)
class Group:
    """Which window or slice a row of statistics is: `kind` WINDOW for the whole window,
    else a slice (SliceMetric's kind, key, other, value)."""

    window_start: int
    kind: str = WINDOW
    key: str = ""
    other: bool = False
    value: str = ""


def n_classes_of(model: MonitoredModel) -> int:
    """0 = binary, as the Spark job and finalise.window_sums count classes."""
    return len(model.classes or []) if model.task == "multiclass" else 0


def groups_of(rows: Sequence[Mapping[str, Any]], n_classes: int) -> list[tuple[Group, WindowSums]]:
    """Spark's collected rows as (group, mergeable statistics)."""
    return [
        (
            Group(
                window_start=int(row["ws"]),
                kind=str(row["kind"]),
                key=str(row["key"]),
                other=bool(row["other"]),
                value=str(row["value"]),
            ),
            window_sums(row, n_classes),
        )
        for row in rows
    ]


def finalise_groups(
    *, groups: Sequence[tuple[Group, WindowSums]], model: MonitoredModel, now: datetime
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(window rows, slice rows) ready for the store. Both routes of `lossmon spark
    compute` (the database URL here, the HTTP API through app/spark/service.py) come
    through this one function, so their windows are the same to the last bit."""
    windows: list[dict[str, object]] = []
    slices: list[dict[str, object]] = []
    for group, sums in groups:
        values = metric_values(
            model_id=model.id,
            window_start=group.window_start,
            window_seconds=model.window_seconds,
            stats=finalise_sums(sums),
            now=now,
            classes=model.classes,
            source=SPARK,
        )
        if group.kind == WINDOW:
            windows.append(values)
        else:
            values.update(kind=group.kind, key=group.key, other=group.other, value=group.value)
            slices.append(values)
    windows.sort(key=lambda v: int(v["window_start"]))  # type: ignore[call-overload]
    return windows, slices


def finalise(
    *, rows: Sequence[Mapping[str, Any]], model: MonitoredModel, now: datetime
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(window rows, slice rows) of Spark's collected rows."""
    return finalise_groups(groups=groups_of(rows, n_classes_of(model)), model=model, now=now)


def store(
    *,
    session: Session,
    model: MonitoredModel,
    windows: list[dict[str, object]],
    slices: list[dict[str, object]],
    start: int | None,
    end: int | None,
) -> StoreReport:
    starts = [int(v["window_start"]) for v in windows]  # type: ignore[call-overload]
    lo = start if start is not None else (min(starts) if starts else None)
    hi = end if end is not None else (max(starts) + 1 if starts else None)
    gone: list[int] = []
    if lo is not None and hi is not None:
        previous = session.scalars(
            select(WindowMetric.window_start).where(
                WindowMetric.model_id == model.id,
                WindowMetric.source == SPARK,
                WindowMetric.window_start >= lo,
                WindowMetric.window_start < hi,
            )
        ).all()
        gone = sorted(set(previous) - set(starts))
    if gone:
        session.execute(
            delete(WindowMetric).where(
                WindowMetric.model_id == model.id, WindowMetric.window_start.in_(gone)
            )
        )
    for i in range(0, len(windows), _CHUNK):
        window_service.write_metrics(session=session, values=windows[i : i + _CHUNK])
    slice_store.replace_slices(
        session=session,
        windows=[(model.id, ws) for ws in sorted({*starts, *gone})],
        values=slices,
    )
    stamps = [cast(datetime, v["computed_at"]) for v in windows]
    alerting_service.mark_models_changed(
        session=session,
        model_ids={model.id},
        # Only windows removed: nothing newly computed to miss, any time will do.
        computed_at=min(stamps) if stamps else datetime.now(UTC),
    )
    return StoreReport(windows=len(windows), slices=len(slices), removed=len(gone))
