"""HTTP for ingestion. Plain `def` routes: the bulk work runs in the threadpool."""

from __future__ import annotations

import time

from fastapi import APIRouter

from app import counters as observability_counters
from app.api import responses
from app.api.deps import Ingest, SessionDep, SettingsDep
from app.api.errors import ApiError, batch_too_large_message
from app.ingestion import service
from app.ingestion.schemas import (
    ActualBatch,
    IngestActualsOut,
    IngestPredictionsOut,
    PredictionBatch,
)
from app.registry import service as model_service
from app.registry.router import ModelId

router = APIRouter(prefix="/v1/models", tags=["ingestion"], responses=responses.COMMON)

_BATCH_RESPONSES = {**responses.BODY, **responses.NOT_FOUND}


def _check_batch(count: int, cap: int) -> None:
    if count > cap:
        raise ApiError(413, batch_too_large_message(count, cap))


def _now_us() -> int:
    return time.time_ns() // 1000


@router.post(
    "/{model_id}/predictions",
    response_model=IngestPredictionsOut,
    responses=_BATCH_RESPONSES,
    dependencies=[Ingest],
)
def post_predictions(
    model_id: ModelId, batch: PredictionBatch, session: SessionDep, settings: SettingsDep
) -> IngestPredictionsOut:
    """Store a batch of predictions; re-sent prediction_ids are counted as duplicates."""
    _check_batch(len(batch.predictions), settings.max_batch_items)
    model = model_service.require_model(session=session, model_id=model_id)
    result = service.ingest_predictions(
        session=session,
        model=model,
        items=batch.predictions,
        now_us=_now_us(),
        max_future_s=settings.max_future_s,
    )
    observability_counters.record_predictions(model.id, result.accepted, result.duplicates)
    return IngestPredictionsOut(accepted=result.accepted, duplicates=result.duplicates)


@router.post(
    "/{model_id}/actuals",
    response_model=IngestActualsOut,
    responses=_BATCH_RESPONSES,
    dependencies=[Ingest],
)
def post_actuals(
    model_id: ModelId, batch: ActualBatch, session: SessionDep, settings: SettingsDep
) -> IngestActualsOut:
    """Store ground truth; a re-sent prediction_id replaces its earlier actual."""
    _check_batch(len(batch.actuals), settings.max_batch_items)
    model = model_service.require_model(session=session, model_id=model_id)
    result = service.ingest_actuals(
        session=session,
        model=model,
        items=batch.actuals,
        now_us=_now_us(),
        max_future_s=settings.max_future_s,
    )
    observability_counters.record_actuals(model.id, result.matched, result.pending, result.expired)
    return IngestActualsOut(
        accepted=result.accepted,
        matched=result.matched,
        pending=result.pending,
        expired=result.expired,
    )
