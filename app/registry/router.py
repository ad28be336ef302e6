"""HTTP for the models registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.api import pagination, responses
from app.api.deps import Admin, Read, ReadSessionDep, SessionDep
from app.registry import service
from app.registry.hooks import HooksDep
from app.registry.schemas import MODEL_ID_PATTERN, ModelIn, ModelList, ModelOut

router = APIRouter(prefix="/v1/models", tags=["models"], responses=responses.COMMON)

ModelId = Annotated[str, Path(pattern=MODEL_ID_PATTERN, description="[A-Za-z0-9._-]{1,128}")]


@router.put(
    "/{model_id}",
    response_model=ModelOut,
    dependencies=[Admin],
    responses={**responses.BODY, **responses.CONFLICT},
)
def put_model(model_id: ModelId, body: ModelIn, session: SessionDep, hooks: HooksDep) -> ModelOut:
    """Create or update a model (idempotent). Fields left out keep their value on update."""
    model, _created = service.upsert_model(
        session=session, model_id=model_id, body=body, now=datetime.now(UTC), hooks=hooks
    )
    return service.to_out(model)


@router.get("", response_model=ModelList, dependencies=[Read])
def list_models(
    session: ReadSessionDep,
    limit: pagination.Limit = pagination.DEFAULT_LIMIT,
    cursor: pagination.Cursor = None,
) -> ModelList:
    """Registered models by id, `limit` per page; `next_cursor` continues (null at the end)."""
    after = pagination.decode("model", cursor) if cursor is not None else None
    models = service.list_models(session=session, after=after, limit=limit + 1)
    next_cursor = pagination.encode("model", models[limit - 1].id) if len(models) > limit else None
    return ModelList(models=[service.to_out(m) for m in models[:limit]], next_cursor=next_cursor)


@router.get(
    "/{model_id}", response_model=ModelOut, dependencies=[Read], responses=responses.NOT_FOUND
)
def get_model(model_id: ModelId, session: ReadSessionDep) -> ModelOut:
    return service.to_out(service.require_model(session=session, model_id=model_id))


@router.delete(
    "/{model_id}",
    status_code=204,
    response_class=Response,
    dependencies=[Admin],
    responses=responses.NOT_FOUND,
)
def delete_model(model_id: ModelId, session: SessionDep) -> Response:
    """Delete the model with all its data: predictions, actuals, windows, monitors,
    alerts and their webhook deliveries. No webhook is sent for the removed alerts."""
    model = service.require_model(session=session, model_id=model_id)
    service.delete_model(session=session, model=model)
    return Response(status_code=204)
