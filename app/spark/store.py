"""Spark's windows into the window store: the same rows, conversions and slice table as
the compute pass, marked `source = "spark"`.

Storing a run replaces the model's spark windows in the run's range (a re-run is
idempotent; a window that lost all its predictions in the files is removed) and flags
the model's monitors for evaluation in the same transaction, as the compute pass does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.alerting import service as alerting_service
from app.registry.models import MonitoredModel
from app.spark.finalise import window_stats
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


def finalise(
    *, rows: Sequence[Mapping[str, Any]], model: MonitoredModel, now: datetime
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """(window rows, slice rows) ready for the store."""
    n_classes = len(model.classes or []) if model.task == "multiclass" else 0
    windows: list[dict[str, object]] = []
    slices: list[dict[str, object]] = []
    for row in rows:
        values = metric_values(
            model_id=model.id,
            window_start=int(row["ws"]),
            window_seconds=model.window_seconds,
            stats=window_stats(row, n_classes),
            now=now,
            classes=model.classes,
            source=SPARK,
        )
        if row["kind"] == WINDOW:
            windows.append(values)
        else:
            values.update(
                kind=row["kind"], key=row["key"], other=bool(row["other"]), value=row["value"]
            )
            slices.append(values)
    windows.sort(key=lambda v: int(v["window_start"]))  # type: ignore[call-overload]
    return windows, slices


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
    alerting_service.mark_models_changed(session=session, model_ids={model.id})
    return StoreReport(windows=len(windows), slices=len(slices), removed=len(gone))
