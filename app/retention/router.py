"""HTTP for retention: what a model keeps (rows, retention_days)."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from app.api import responses
from app.api.deps import Read, ReadSessionDep
from app.registry import service as model_service
from app.registry.router import ModelId
from app.retention import service

router = APIRouter(prefix="/v1/models", tags=["models"], responses=responses.COMMON)


class StorageOut(BaseModel):
    model_id: str
    retention_days: int | None = Field(description="null: raw rows are kept forever")
    predictions_kept: int = Field(description="raw predictions stored, as of the last compute")
    actuals_kept: int = Field(description="raw actuals stored (labeled + pending)")


@router.get(
    "/{model_id}/storage",
    response_model=StorageOut,
    dependencies=[Read],
    responses=responses.NOT_FOUND,
)
def get_storage(model_id: ModelId, session: ReadSessionDep) -> StorageOut:
    """Raw rows a model keeps (the dashboard's "rows kept"; also lossmon_rows_kept)."""
    model = model_service.require_model(session=session, model_id=model_id)
    predictions, actuals = service.rows_kept(session, model_id=model.id)[model.id]
    return StorageOut(
        model_id=model.id,
        retention_days=model.retention_days,
        predictions_kept=predictions,
        actuals_kept=actuals,
    )
