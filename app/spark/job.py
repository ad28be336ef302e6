"""`lossmon spark compute`: read the model from lossmon, aggregate in Spark, finalise and
store. Nothing is stored unless every step before the store succeeded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from app.alerting import watched
from app.db import session_scope
from app.registry.models import MonitoredModel
from app.spark import aggregate, read
from app.spark import store as spark_store
from app.spark.columns import ColumnMap


class UnknownModel(LookupError):
    def __init__(self, model_id: str) -> None:
        super().__init__(
            f"unknown model {model_id!r}: register it first (PUT /v1/models/{model_id})"
        )
        self.model_id = model_id


class ModelChanged(RuntimeError):
    """The model's window, clip_eps or classes changed while Spark was computing."""


@dataclass(frozen=True)
class Inputs:
    model_id: str
    predictions: str
    actuals: str
    fmt: str = "parquet"
    columns: ColumnMap = field(default_factory=ColumnMap)
    since: int | None = None  # epoch seconds; windows starting at or after floor(since)
    until: int | None = None  # epoch seconds; windows starting before it
    dedup_lookback: int = 86_400  # seconds read before `since` to find earlier duplicates


@dataclass(frozen=True)
class RunReport:
    windows: int
    slices: int
    removed: int
    groups: int
    spark_seconds: float
    store_seconds: float


def check_model(*, session: Session, model_id: str) -> None:
    _model(session, model_id)


def _model(session: Session, model_id: str) -> MonitoredModel:
    model = session.get(MonitoredModel, model_id)
    if model is None:
        raise UnknownModel(model_id)
    return model


def spec_for(
    model: MonitoredModel, *, inputs: Inputs, top_n: int, pinned: set[tuple[str, str, str]]
) -> aggregate.JobSpec:
    size = model.window_seconds
    return aggregate.JobSpec(
        window_seconds=size,
        clip_eps=model.clip_eps,
        n_classes=len(model.classes or []) if model.task == "multiclass" else 0,
        top_n=top_n,
        pinned=sorted(pinned),
        start=None if inputs.since is None else inputs.since // size * size,
        end=inputs.until,
        dedup_lookback_seconds=inputs.dedup_lookback,
    )


def compute(
    spark: object,
    *,
    inputs: Inputs,
    factory: sessionmaker[Session],
    top_n: int,
    clock: type[datetime] = datetime,
) -> RunReport:
    """Run the job on `spark` (a SparkSession) and store its windows."""
    from pyspark.sql import SparkSession

    assert isinstance(spark, SparkSession)
    with session_scope(factory) as session:
        model = _model(session, inputs.model_id)
        classes = list(model.classes) if model.task == "multiclass" and model.classes else None
        pinned = watched.pinned_slices(session=session, model_id=model.id)
        spec = spec_for(model, inputs=inputs, top_n=top_n, pinned=pinned)
        session.expunge(model)
    started = time.perf_counter()
    preds = read.predictions(
        read.load(spark, inputs.predictions, inputs.fmt), columns=inputs.columns, classes=classes
    )
    acts = read.actuals(
        read.load(spark, inputs.actuals, inputs.fmt), columns=inputs.columns, classes=classes
    )
    rows = aggregate.collect(aggregate.sums(preds, acts, spec))
    # The input checks were observed during that job's scans: refuse before storing.
    read.enforce(preds.validation)
    read.enforce(acts.validation)
    spark_seconds = time.perf_counter() - started
    windows, slices = spark_store.finalise(rows=rows, model=model, now=clock.now(UTC))
    started = time.perf_counter()
    with session_scope(factory) as session:
        current = _model(session, inputs.model_id)  # deleted meanwhile: store nothing
        if (current.window_seconds, current.clip_eps, current.classes) != (
            model.window_seconds,
            model.clip_eps,
            model.classes,
        ):
            raise ModelChanged(f"model {model.id!r} changed during the run; run it again")
        report = spark_store.store(
            session=session,
            model=current,
            windows=windows,
            slices=slices,
            start=spec.start,
            end=spec.end,
        )
    return RunReport(
        windows=report.windows,
        slices=report.slices,
        removed=report.removed,
        groups=len(rows),
        spark_seconds=spark_seconds,
        store_seconds=time.perf_counter() - started,
    )
