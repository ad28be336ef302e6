"""HTTP for the models registry."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path

from app.api import responses
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
def list_models(session: ReadSessionDep) -> ModelList:
    return ModelList(models=[service.to_out(m) for m in service.list_models(session=session)])


@router.get(
    "/{model_id}", response_model=ModelOut, dependencies=[Read], responses=responses.NOT_FOUND
)
def get_model(model_id: ModelId, session: ReadSessionDep) -> ModelOut:
    return service.to_out(service.require_model(session=session, model_id=model_id))
