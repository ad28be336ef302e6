"""`lossmon spark compute`: read the model from lossmon, aggregate in Spark, finalise and
store, through the database URL (`compute`) or the HTTP API (`compute_remote`). Nothing
is stored unless every step before the store succeeded."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.alerting import watched
from app.db import session_scope
from app.registry.models import MonitoredModel
from app.spark import aggregate, read, remote
from app.spark import store as spark_store
from app.spark.columns import ColumnMap
from app.windows.history_json import iso_seconds


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


@dataclass(frozen=True)
class ModelParams:
    """What the job computes with of the model (either route reads it before Spark
    starts, and refuses to store if it changed meanwhile)."""

    task: str
    window_seconds: int
    clip_eps: float
    classes: list[str] | None

    @classmethod
    def of(cls, model: MonitoredModel) -> ModelParams:
        classes = list(model.classes) if model.classes is not None else None
        return cls(model.task, model.window_seconds, model.clip_eps, classes)

    @property
    def n_classes(self) -> int:
        return len(self.classes or []) if self.task == "multiclass" else 0


def spec_for(
    model: ModelParams, *, inputs: Inputs, top_n: int, pinned: set[tuple[str, str, str]]
) -> aggregate.JobSpec:
    size = model.window_seconds
    return aggregate.JobSpec(
        window_seconds=size,
        clip_eps=model.clip_eps,
        n_classes=model.n_classes,
        top_n=top_n,
        pinned=sorted(pinned),
        start=None if inputs.since is None else inputs.since // size * size,
        end=inputs.until,
        dedup_lookback_seconds=inputs.dedup_lookback,
    )


def _aggregate(
    spark: object, *, inputs: Inputs, model: ModelParams, spec: aggregate.JobSpec
) -> list[dict[str, Any]]:
    """Spark's rows of sums, one per window and slice, after the input checks passed."""
    from pyspark.sql import SparkSession

    assert isinstance(spark, SparkSession)
    classes = model.classes if model.n_classes else None
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
    return rows


def compute(
    spark: object,
    *,
    inputs: Inputs,
    factory: sessionmaker[Session],
    top_n: int,
    clock: type[datetime] = datetime,
) -> RunReport:
    """Run the job on `spark` (a SparkSession) and store its windows in the database."""
    with session_scope(factory) as session:
        model = _model(session, inputs.model_id)
        params = ModelParams.of(model)
        pinned = watched.pinned_slices(session=session, model_id=model.id)
        session.expunge(model)
    spec = spec_for(params, inputs=inputs, top_n=top_n, pinned=pinned)
    started = time.perf_counter()
    rows = _aggregate(spark, inputs=inputs, model=params, spec=spec)
    spark_seconds = time.perf_counter() - started
    windows, slices = spark_store.finalise(rows=rows, model=model, now=clock.now(UTC))
    started = time.perf_counter()
    with session_scope(factory) as session:
        current = _model(session, inputs.model_id)  # deleted meanwhile: store nothing
        if ModelParams.of(current) != params:
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


@dataclass(frozen=True)
class RemotePlan:
    """What GET .../spark-job told the run (read before Spark starts, so an unknown
    model or a refused key costs no JVM)."""

    model: ModelParams
    pinned: set[tuple[str, str, str]]
    top_n: int
    max_body_bytes: int


def remote_plan(target: remote.Target, model_id: str) -> RemotePlan:
    job = remote.job_parameters(target, model_id)
    m = job["model"]
    return RemotePlan(
        model=ModelParams(m["task"], m["window_seconds"], m["clip_eps"], m["classes"]),
        pinned={(p["kind"], p["key"], p["value"]) for p in job["pinned"]},
        top_n=job["slice_top_n"],
        max_body_bytes=job["max_body_bytes"],
    )


def compute_remote(
    spark: object, *, inputs: Inputs, target: remote.Target, plan: RemotePlan | None = None
) -> RunReport:
    """The same run through lossmon's HTTP API (an admin key): the parameters come from
    GET .../spark-job, the statistics go up in one PUT .../spark-windows, where the
    server finalises and stores them with the code `compute` uses. The upload repeats
    the model's parameters: if they changed meanwhile the server refuses it (409)."""
    plan = plan or remote_plan(target, inputs.model_id)
    params = plan.model
    spec = spec_for(params, inputs=inputs, top_n=plan.top_n, pinned=plan.pinned)
    started = time.perf_counter()
    rows = _aggregate(spark, inputs=inputs, model=params, spec=spec)
    spark_seconds = time.perf_counter() - started
    body = {
        "model": dataclasses.asdict(params),
        "start": None if spec.start is None else iso_seconds(spec.start),
        "end": None if spec.end is None else iso_seconds(spec.end),
        "rows": [
            {
                "window_start": group.window_start,
                "kind": group.kind,
                "key": group.key,
                "other": group.other,
                "value": group.value,
                "sums": remote.sums_body(sums),
            }
            for group, sums in spark_store.groups_of(rows, params.n_classes)
        ],
    }
    started = time.perf_counter()
    stored = remote.upload(target, inputs.model_id, body, limit=plan.max_body_bytes)
    return RunReport(
        windows=stored["windows"],
        slices=stored["slices"],
        removed=stored["removed"],
        groups=len(rows),
        spark_seconds=spark_seconds,
        store_seconds=time.perf_counter() - started,
    )
