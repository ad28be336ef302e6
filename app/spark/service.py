"""The server side of `lossmon spark compute --url`: the job's parameters, and the
upload of its window statistics, finalised and stored by app/spark/store.py exactly as
the database route does (one transaction: replaced windows, slices, monitors flagged)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from app.alerting import watched
from app.errors import Conflict, Invalid, item_error
from app.metrics.window_stats import WindowSums
from app.metrics.window_stats import finalise as finalise_sums
from app.registry import service as registry_service
from app.registry.models import MonitoredModel
from app.spark import store as spark_store
from app.spark.schemas import (
    PinnedSlice,
    SparkJobOut,
    SparkModel,
    SparkRowIn,
    SparkWindowsIn,
)

# The last second a window may end: history timestamps are RFC 3339 (years 0001-9999).
_LAST_END = 253_402_300_800


def model_parameters(model: MonitoredModel) -> SparkModel:
    return SparkModel(
        task=model.task,
        window_seconds=model.window_seconds,
        clip_eps=model.clip_eps,
        classes=list(model.classes) if model.classes is not None else None,
    )


def job_parameters(
    *, session: Session, model_id: str, slice_top_n: int, max_body_bytes: int
) -> SparkJobOut:
    """What a run needs of lossmon, read in one snapshot (the database route reads the
    same in app/spark/job.py)."""
    model = registry_service.require_model(session=session, model_id=model_id)
    pinned = watched.pinned_slices(session=session, model_id=model_id)
    return SparkJobOut(
        model_id=model.id,
        model=model_parameters(model),
        pinned=[PinnedSlice(kind=k, key=key, value=v) for k, key, v in sorted(pinned)],
        slice_top_n=slice_top_n,
        max_body_bytes=max_body_bytes,
    )


@dataclass(frozen=True)
class Prepared:
    """An upload validated and finalised, ready for the one write transaction."""

    model: SparkModel
    windows: list[dict[str, object]]
    slices: list[dict[str, object]]
    start: int | None
    end: int | None


def prepare_windows(
    *, session: Session, model_id: str, body: SparkWindowsIn, now: datetime
) -> Prepared:
    """Validate and finalise an upload on a read session: the write transaction (on
    SQLite the database's one write lock) is then held only while storing. Raises
    NotFound (unknown model), Conflict (the model changed since the run read it) or
    Invalid (a row the model cannot have)."""
    model = registry_service.require_model(session=session, model_id=model_id)
    _unchanged(model_id, body.model, model)
    start = None if body.start is None else math.floor(body.start.timestamp())
    end = None if body.end is None else math.ceil(body.end.timestamp())
    if start is not None and end is not None and start >= end:
        raise Invalid([item_error(None, "end", "must be after start")])
    groups = list(_groups(body.rows, model=model, start=start, end=end))
    windows, slices = spark_store.finalise_groups(groups=groups, model=model, now=now)
    return Prepared(body.model, windows, slices, start, end)


def store_prepared(
    *, session: Session, model_id: str, prepared: Prepared
) -> spark_store.StoreReport:
    """Store a prepared upload in one transaction (the caller's): the range's spark
    windows replaced, its slices, the model's monitors flagged."""
    # Locked against a concurrent DELETE of the model, as ingestion locks it; checked
    # again, as it may have changed since it was read for prepare_windows.
    model = registry_service.require_model(session=session, model_id=model_id, lock=True)
    _unchanged(model_id, prepared.model, model)
    return spark_store.store(
        session=session,
        model=model,
        windows=prepared.windows,
        slices=prepared.slices,
        start=prepared.start,
        end=prepared.end,
    )


def _unchanged(model_id: str, computed_with: SparkModel, model: MonitoredModel) -> None:
    current = model_parameters(model)
    if computed_with != current:
        raise Conflict(
            f"model {model_id!r} changed since the Spark job read it (computed with "
            f"{computed_with.model_dump()}, now {current.model_dump()}); run the job again"
        )


def _groups(
    rows: list[SparkRowIn], *, model: MonitoredModel, start: int | None, end: int | None
) -> Iterator[tuple[spark_store.Group, WindowSums]]:
    size = model.window_seconds
    k = max(spark_store.n_classes_of(model), 2)
    windows = {r.window_start for r in rows if r.kind == spark_store.WINDOW}
    seen: set[tuple[object, ...]] = set()
    for i, row in enumerate(rows):

        def bad(field: str, message: str, i: int = i) -> Invalid:
            return Invalid([item_error(i, f"rows.{field}", message)])

        ws = row.window_start
        if ws % size:
            raise bad("window_start", f"not a multiple of the model's window ({size} s)")
        if ws + size > _LAST_END:
            raise bad("window_start", "the window ends after 9999-12-31T23:59:59Z")
        if (start is not None and ws < start) or (end is not None and ws >= end):
            raise bad("window_start", "outside the upload's range [start, end)")
        if row.kind != spark_store.WINDOW and ws not in windows:
            raise bad("window_start", "a slice of a window the upload has no window row for")
        # A window row's key, other and value are not stored: one window row per start.
        slice_of = () if row.kind == spark_store.WINDOW else (row.key, row.other, row.value)
        identity = (ws, row.kind, *slice_of)
        if identity in seen:
            raise bad("kind", "a second row for the same window or slice")
        seen.add(identity)
        sums = row.sums
        if sums.task != model.task:
            raise bad("sums.task", f"the model's task is {model.task!r}")
        if sums.labeled > sums.predictions:
            raise bad("sums.labeled", "more labeled rows than predictions")
        for name in ("class_weight", "class_loss_sum"):
            if len(getattr(sums, name)) != k:
                raise bad(f"sums.{name}", f"needs {k} values, one per class of the model")
        record = WindowSums.from_dict(sums.model_dump())
        # Statistics no run produces (a zero weight sum with labeled rows, sums near the
        # float limit) could finalise to an error or to infinities the history cannot
        # serve: refuse the row now, while nothing is stored.
        try:
            stats = finalise_sums(record)
        except (ArithmeticError, ValueError) as exc:
            raise bad("sums", f"the statistics do not finalise ({exc})") from exc
        if not _finite(stats):
            raise bad("sums", "the statistics finalise to infinite or NaN values")
        yield (
            spark_store.Group(
                window_start=ws, kind=row.kind, key=row.key, other=row.other, value=row.value
            ),
            record,
        )


def _finite(value: Any) -> bool:
    """No NaN or infinity anywhere in a finalised window (its reliability bins too)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, tuple | list):
        return all(_finite(v) for v in value)
    if dataclasses.is_dataclass(value):
        return all(_finite(getattr(value, f.name)) for f in dataclasses.fields(value))
    return True
