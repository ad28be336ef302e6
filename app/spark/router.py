"""HTTP for `lossmon spark compute --url URL --api-key K`: the job reads its parameters,
runs Spark where the files are, and uploads the window statistics in one request.

Plain Python: the server needs no pyspark for these routes.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter

from app.api import responses
from app.api.deps import Admin, ReadSessionDep, SessionDep, SettingsDep
from app.registry.router import ModelId
from app.spark import service
from app.spark.schemas import SparkJobOut, SparkWindowsIn, SparkWindowsOut

router = APIRouter(prefix="/v1/models", tags=["spark"], responses=responses.COMMON)


@router.get(
    "/{model_id}/spark-job",
    response_model=SparkJobOut,
    dependencies=[Admin],
    responses=responses.NOT_FOUND,
)
def get_spark_job(model_id: ModelId, session: ReadSessionDep, settings: SettingsDep) -> SparkJobOut:
    """What `lossmon spark compute` computes with: the model's window, `clip_eps`, task
    and classes, the slices its monitors watch, this server's top N per slice dimension
    and its upload size limit."""
    return service.job_parameters(
        session=session,
        model_id=model_id,
        slice_top_n=settings.slice_top_n,
        max_body_bytes=settings.max_body_bytes,
    )


@router.put(
    "/{model_id}/spark-windows",
    response_model=SparkWindowsOut,
    dependencies=[Admin],
    responses={
        **responses.BODY,
        **responses.NOT_FOUND,
        409: {
            "model": responses.ErrorOut,
            "description": "the model's window, clip_eps, task or classes changed since "
            "the job read them; nothing stored, run the job again",
        },
    },
)
def put_spark_windows(
    model_id: ModelId, body: SparkWindowsIn, read_session: ReadSessionDep, session: SessionDep
) -> SparkWindowsOut:
    """Store a Spark run's window statistics as `source: spark` windows and slices,
    finalised by the same code as every other window. Replaces the model's spark windows
    starting in [start, end) (re-sending a run changes nothing), removes those of the
    range it no longer has, and flags the model's monitors, all in one transaction:
    a refused upload stores nothing."""
    prepared = service.prepare_windows(
        session=read_session, model_id=model_id, body=body, now=datetime.now(UTC)
    )
    report = service.store_prepared(session=session, model_id=model_id, prepared=prepared)
    return SparkWindowsOut(
        model_id=model_id, windows=report.windows, slices=report.slices, removed=report.removed
    )
