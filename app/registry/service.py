"""Models registry logic. Services flush; the edge commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.registry.hooks import UNWIRED, RegistryHooks
from app.registry.models import MonitoredModel
from app.registry.schemas import ModelIn, ModelOut, window_seconds

# Changing these would re-interpret stored data (window_start, labels).
_SHAPE_FIELDS = ("task", "classes", "window")


def to_out(m: MonitoredModel) -> ModelOut:
    return ModelOut(
        model_id=m.id,
        task=m.task,
        window=m.window,
        window_seconds=m.window_seconds,
        description=m.description,
        classes=m.classes,
        reference_base_rate=m.reference_base_rate,
        clip_eps=m.clip_eps,
        retention_days=m.retention_days,
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


def get_model(*, session: Session, model_id: str) -> MonitoredModel | None:
    return session.get(MonitoredModel, model_id)


def require_model(*, session: Session, model_id: str, lock: bool = False) -> MonitoredModel:
    """lock=True: hold the model's row FOR KEY SHARE (PostgreSQL) until the transaction
    ends, before the caller writes rows that reference it. A concurrent DELETE of the
    model then either committed first (NotFound here) or waits for this transaction;
    without it the DELETE's cascade and this transaction's foreign-key checks can wait
    on each other (deadlock) or the insert fails on the vanished key."""
    model = (
        session.get(MonitoredModel, model_id, with_for_update={"read": True, "key_share": True})
        if lock
        else get_model(session=session, model_id=model_id)
    )
    if model is None:
        raise NotFound(
            f"model {model_id!r} is not registered; create it first with "
            f"PUT /v1/models/{model_id} and a body such as "
            '{"task": "binary", "window": "1h"}',
        )
    return model


def upsert_model(
    *,
    session: Session,
    model_id: str,
    body: ModelIn,
    now: datetime,
    hooks: RegistryHooks = UNWIRED,
) -> tuple[MonitoredModel, bool]:
    """Create or update. Returns (model, created).

    A new clip_eps recomputes every window of the model (API.md "Models: lifecycle"):
    one history must not mix two eps values."""
    model = session.get(MonitoredModel, model_id, with_for_update=True)
    if model is None:
        model = MonitoredModel(
            id=model_id,
            task=body.task,
            window=body.window,
            window_seconds=window_seconds(body.window),
            classes=body.classes,
            description=body.description,
            reference_base_rate=body.reference_base_rate,
            clip_eps=body.clip_eps,
            retention_days=body.retention_days,
            created_at=now,
            updated_at=now,
        )
        session.add(model)
        session.flush()
        return model, True

    given = body.model_dump(include=body.model_fields_set)
    if given.get("task") == "binary":
        given["classes"] = None  # a model turned binary keeps no class list
    changed_shape = [f for f in _SHAPE_FIELDS if f in given and given[f] != getattr(model, f)]
    if changed_shape and hooks.has_data(session, model_id):
        raise Conflict(
            f"model {model_id!r} already has data; {', '.join(changed_shape)} cannot change. "
            "Register a new model id instead.",
        )
    changed = False
    eps_changed = "clip_eps" in given and given["clip_eps"] != model.clip_eps
    for field, value in given.items():
        if getattr(model, field) != value:
            setattr(model, field, value)
            changed = True
    if "window" in given:
        model.window_seconds = window_seconds(model.window)
    if changed:
        model.updated_at = now
    session.flush()
    if eps_changed:
        hooks.recompute_windows(session, model_id)
    return model, False


def list_models(
    *, session: Session, after: str | None = None, limit: int | None = None
) -> list[MonitoredModel]:
    """Models by id; with `after`, those whose id sorts after it (keyset pagination)."""
    query = select(MonitoredModel).order_by(MonitoredModel.id)
    if after is not None:
        query = query.where(MonitoredModel.id > after)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def delete_model(*, session: Session, model: MonitoredModel) -> None:
    """Remove the model with everything that hangs off it. Every table referencing
    models.id (directly or through monitors and alerts) declares ON DELETE CASCADE, so
    the database removes predictions, actuals, windows, slices, monitors, alerts and
    their deliveries in the same statement; a compute pass holding a lease on one of
    its windows finds its claim gone and writes nothing."""
    session.execute(delete(MonitoredModel).where(MonitoredModel.id == model.id))
    session.flush()
