"""HTTP for ingestion. On PostgreSQL a prediction batch is one statement awaited on the
event loop (app/pg_statement_pool.py); otherwise the bulk work runs in the threadpool,
and the transaction opens and commits inside that same call (deps.TransactionDep)."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from app import counters as observability_counters
from app.api import responses
from app.api.deps import Ingest, SettingsDep, TransactionDep
from app.api.errors import ApiError, batch_too_large_message
from app.api.json_body import ValidateJsonRoute, register_fast_decoder
from app.api.write_gate import WriteGate
from app.config import Settings
from app.db import cut_lock_timeout_ms, session_scope
from app.errors import Invalid
from app.ingestion import bulk, service
from app.ingestion.schemas import (
    ActualBatch,
    IngestActualsOut,
    IngestPredictionsOut,
    PredictionBatch,
)
from app.pg_statement_pool import StatementPool
from app.registry import service as model_service
from app.registry.cache import ModelCache, ModelShape
from app.registry.router import ModelId

log = logging.getLogger(__name__)

# Prediction batches: msgspec first, Pydantic for what it refuses (fast_decode.py).
# msgspec is a declared dependency; an environment installed before it was added (a
# development venv not yet refreshed with `make dev`) still serves, Pydantic only.
try:
    from app.ingestion import fast_decode
except ImportError:  # pragma: no cover - depends on the environment
    log.warning("msgspec is not installed: prediction batches are validated by Pydantic only")
else:
    register_fast_decoder(PredictionBatch, fast_decode.decode_prediction_batch)

router = APIRouter(
    prefix="/v1/models",
    tags=["ingestion"],
    responses=responses.COMMON,
    route_class=ValidateJsonRoute,  # batches validated from bytes (app/api/json_body.py)
)

_BATCH_RESPONSES = {**responses.BODY, **responses.NOT_FOUND}
T = TypeVar("T")


def _check_batch(count: int, cap: int) -> None:
    if count > cap:
        raise ApiError(413, batch_too_large_message(count, cap))


def _now_us() -> int:
    return time.time_ns() // 1000


def _load_shape(request: Request, model_id: str) -> ModelShape:
    factory: sessionmaker[Session] = request.app.state.read_session_factory
    with factory() as session:
        return ModelShape.of(model_service.require_model(session=session, model_id=model_id))


# A batch is validated against the cached model shape. The insert checks the shape is
# current (service.ModelChanged otherwise), and a refusal (422) from a cached shape is
# re-checked against a fresh read before it is answered: at most this many tries.
_MODEL_TRIES = 3
# Batches up to this many values (records, times classes for a multiclass model) are
# prepared on the event loop (~0.5 ms for 1,000 binary records); larger ones in the
# threadpool, where the hop costs little beside them and the loop keeps answering.
_PREPARE_ON_LOOP_MAX = 1_000


async def _against_cached_model(
    request: Request, model_id: str, attempt: Callable[[ModelShape], Awaitable[T]]
) -> T:
    """`attempt(model)` against the cached model shape (see _MODEL_TRIES); a cache hit
    costs no thread hop."""
    cache: ModelCache = request.app.state.model_cache
    for tried in range(_MODEL_TRIES):
        model = cache.cached(model_id)
        if model is None:
            model = await run_in_threadpool(
                cache.get, model_id, lambda: _load_shape(request, model_id)
            )
        try:
            return await attempt(model)
        except (service.ModelChanged, Invalid):
            cache.forget(model_id)
            if tried == _MODEL_TRIES - 1:
                raise
    raise AssertionError("unreachable")


def _prepare(
    request: Request, model: ModelShape, batch: PredictionBatch, now_us: int
) -> bulk.PredictionRows:
    settings: Settings = request.app.state.settings
    return service.prepare_predictions(
        model=model, batch=batch.columns(), now_us=now_us, max_future_s=settings.max_future_s
    )


async def _insert_on_loop(
    request: Request,
    model: ModelShape,
    batch: PredictionBatch,
    now_us: int,
    pool: StatementPool,
) -> service.PredictionResult:
    """PostgreSQL: the batch's one statement awaited on the event loop (no thread hop,
    app/pg_statement_pool.py)."""
    settings: Settings = request.app.state.settings
    prepare = functools.partial(_prepare, request, model, batch, now_us)
    sent = len(batch.predictions)
    values = sent * (len(model.classes) if model.classes else 1)
    rows = prepare() if values <= _PREPARE_ON_LOOP_MAX else await run_in_threadpool(prepare)
    async with pool.connection() as conn:
        accepted = await bulk.insert_predictions_on(
            conn,
            model_id=model.id,
            model_version=model.updated_at,
            rows=rows,
            received_us=now_us,
            lock_timeout_ms=cut_lock_timeout_ms(int(settings.db_lock_timeout_s * 1000)),
        )
    return service.prediction_result(model, sent, accepted)


def _insert_in_transaction(
    request: Request, model: ModelShape, batch: PredictionBatch, now_us: int
) -> service.PredictionResult:
    """Elsewhere (SQLite): one transaction, in the threadpool."""
    settings: Settings = request.app.state.settings
    with session_scope(request.app.state.session_factory) as session:
        return service.ingest_predictions(
            session=session,
            model=model,
            batch=batch.columns(),
            now_us=now_us,
            max_future_s=settings.max_future_s,
        )


@router.post(
    "/{model_id}/predictions",
    response_model=IngestPredictionsOut,
    responses=_BATCH_RESPONSES,
    dependencies=[Ingest],
)
async def post_predictions(
    model_id: ModelId, batch: PredictionBatch, request: Request
) -> IngestPredictionsOut:
    """Store a batch of predictions; re-sent prediction_ids are counted as duplicates."""
    # async: on PostgreSQL the one statement is awaited on the event loop, elsewhere the
    # database work is ONE threadpool call (for a plain `def` route FastAPI would also
    # validate the returned model in a second thread hop, which cost a single-prediction
    # POST more than its insert, py-spy). Either way it commits before the answer.
    # (Most batches do not get here: fast_route.py serves them, and hands this route
    # what it does not take itself.)
    return await ingest_predictions(request, model_id, batch)


async def ingest_predictions(
    request: Request, model_id: str, batch: PredictionBatch
) -> IngestPredictionsOut:
    """The work of POST predictions once the key is checked and the body validated: the
    FastAPI route above and fast_route.py both end here."""
    settings: Settings = request.app.state.settings
    _check_batch(len(batch.predictions), settings.max_batch_items)
    now_us = _now_us()
    # The writer slot (app/api/write_gate.py) is taken here rather than by a generator
    # dependency: FastAPI's machinery for one (an exit stack, a shielded exit) was ~7%
    # of the server's CPU on this route (py-spy --gil, 1,000-row batches).
    gate: WriteGate = request.app.state.write_gate
    semaphore = await gate.enter()
    try:
        pool: StatementPool | None = getattr(request.app.state, "statement_pool", None)

        async def attempt(model: ModelShape) -> service.PredictionResult:
            if pool is not None:
                return await _insert_on_loop(request, model, batch, now_us, pool)
            return await run_in_threadpool(_insert_in_transaction, request, model, batch, now_us)

        result = await _against_cached_model(request, model_id, attempt)
    finally:
        semaphore.release()
    observability_counters.record_predictions(model_id, result.accepted, result.duplicates)
    return IngestPredictionsOut(accepted=result.accepted, duplicates=result.duplicates)


@router.post(
    "/{model_id}/actuals",
    response_model=IngestActualsOut,
    responses=_BATCH_RESPONSES,
    dependencies=[Ingest],
)
def post_actuals(
    model_id: ModelId, batch: ActualBatch, transaction: TransactionDep, settings: SettingsDep
) -> IngestActualsOut:
    """Store ground truth; a re-sent prediction_id replaces its earlier actual."""
    _check_batch(len(batch.actuals), settings.max_batch_items)
    with transaction() as session:
        # Read in the transaction: labels are stored by the model's class list. Locked:
        # a concurrent DELETE of the model answers 404 here, not a 500 or a deadlock.
        model = model_service.require_model(session=session, model_id=model_id, lock=True)
        result = service.ingest_actuals(
            session=session,
            model=ModelShape.of(model),
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
