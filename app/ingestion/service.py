"""Ingestion: validate the whole batch, then store it with bulk statements.

Nothing of a batch is written unless every record is valid. Predictions are immutable
(first write wins, re-sends are counted as duplicates); actuals are last-write-wins.
Every write marks the affected windows dirty in the same transaction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from app.errors import Invalid, Unavailable, item_error
from app.ingestion import bulk, time_bounds
from app.ingestion.columns import PredictionColumns
from app.ingestion.models import Actual, Prediction
from app.ingestion.schemas import ActualIn
from app.ingestion.timestamps import Int64s, as_utc_micros
from app.registry import horizon
from app.registry.cache import ModelShape
from app.windows import dirty


class ModelChanged(Unavailable):
    """The model row changed after the batch was validated against it; nothing was
    written. The caller re-reads the model and tries again (and, after the last try,
    answers 503: the model was changed again and again while the batch was stored)."""

    def __init__(self, model_id: str) -> None:
        super().__init__(
            f"model {model_id!r} changed while the batch was stored; nothing was stored, retry"
        )


@dataclass(frozen=True, slots=True)
class PredictionResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class ActualResult:
    accepted: int
    matched: int
    pending: int
    expired: int = 0


def window_start_of(ts_us: int, window_seconds: int) -> int:
    """Start (epoch seconds) of the UTC-epoch-aligned tumbling window holding ts."""
    return (ts_us // 1_000_000) // window_seconds * window_seconds


# API.md: multiclass probabilities sum to 1 within this tolerance.
PROBABILITY_SUM_TOLERANCE = 1e-6


def _check_binary_predictions(batch: PredictionColumns) -> list[dict[str, Any]]:
    scores, probabilities = batch.scores, batch.probabilities
    if None not in scores and probabilities.count(None) == len(probabilities):
        return []  # the usual batch, checked without building anything per row
    errors = []
    for i, (score, given) in enumerate(zip(scores, probabilities, strict=True)):
        if given is not None:
            errors.append(
                item_error(
                    i,
                    "probabilities",
                    "probabilities is for multiclass models; a binary model takes score",
                )
            )
        elif score is None:
            errors.append(item_error(i, "score", "score is required (P(positive class))"))
    return errors


def _class_list_error(classes: Sequence[str], given: dict[str, float]) -> str | None:
    missing = [c for c in classes if c not in given]
    extra = sorted(set(given) - set(classes))
    if not missing and not extra:
        return None
    parts = []
    if missing:
        parts.append(f"missing {', '.join(map(repr, missing[:5]))}")
    if extra:
        parts.append(f"unknown {', '.join(map(repr, extra[:5]))}")
    return f"probabilities must name exactly the model's classes: {'; '.join(parts)}"


def _multiclass_probabilities(
    batch: PredictionColumns, classes: Sequence[str]
) -> tuple[list[str | None], list[dict[str, Any]]]:
    """JSON text of each row's probabilities in class order, and the errors."""
    out: list[str | None] = []
    errors = []
    for i, (score, given) in enumerate(zip(batch.scores, batch.probabilities, strict=True)):
        if score is not None:
            errors.append(
                item_error(
                    i, "score", "score is for binary models; a multiclass model takes probabilities"
                )
            )
            continue
        if given is None:
            errors.append(
                item_error(i, "probabilities", "probabilities is required (one per class)")
            )
            continue
        message = _class_list_error(classes, given)
        if message is not None:
            errors.append(item_error(i, "probabilities", message))
            continue
        values = [given[c] for c in classes]
        total = math.fsum(values)
        if abs(total - 1.0) > PROBABILITY_SUM_TOLERANCE:
            errors.append(
                item_error(
                    i, "probabilities", f"probabilities must sum to 1 (± 1e-6), got {total!r}"
                )
            )
            continue
        # repr-based JSON floats round-trip exactly.
        out.append(json.dumps(values))
    return out, errors


def _timestamp_errors(
    items: Sequence[ActualIn], *, now_us: int, max_future_s: float
) -> list[dict[str, Any]]:
    return time_bounds.out_of_range(
        [as_utc_micros(t) if (t := item.timestamp) else None for item in items],
        now_us=now_us,
        max_future_s=max_future_s,
    )


def prepare_predictions(
    *,
    model: ModelShape,
    batch: PredictionColumns,
    now_us: int,
    max_future_s: float,
) -> bulk.PredictionRows:
    """Validate a batch against the model and build its column arrays (pure: no I/O).
    Raises Invalid with every record's errors; nothing is stored then."""
    n = len(batch)
    scores = batch.scores
    probabilities: list[str | None] = [None] * n
    if model.task == "multiclass":
        probabilities, errors = _multiclass_probabilities(batch, model.classes or ())
    else:
        errors = _check_binary_predictions(batch)
    ts_in = batch.timestamps_us
    errors += time_bounds.out_of_range(ts_in, now_us=now_us, max_future_s=max_future_s)
    if errors:
        raise Invalid(sorted(errors, key=lambda e: e["index"]))

    # Rows go in sorted by prediction_id (the same lock order in every transaction), the
    # first of a repeated id only (first write wins, also within a batch). The usual batch
    # has unique ids, often already sorted: that is found and kept without a Python loop.
    ids = batch.prediction_ids
    order: list[int] | None
    if len(set(ids)) == n:
        ordered_ids = sorted(ids)
        order = None if ordered_ids == ids else sorted(range(n), key=ids.__getitem__)
    else:
        first: dict[str, int] = {}
        for i, pid in enumerate(ids):
            first.setdefault(pid, i)
        ordered_ids = sorted(first)
        order = [first[pid] for pid in ordered_ids]
    # Most producers send every timestamp: then nothing to fill in (a numpy column never
    # has a gap; for a list, the check runs in C).
    ts: list[int] | Int64s
    if isinstance(ts_in, np.ndarray):
        ts = ts_in
    elif None not in ts_in:
        ts = cast("list[int]", ts_in)
    else:
        ts = [now_us if u is None else u for u in ts_in]
    versions = batch.model_versions
    segments = batch.segments
    if order is not None:
        ts = ts[order] if isinstance(ts, np.ndarray) else [ts[i] for i in order]
        scores = [scores[i] for i in order]
        probabilities = [probabilities[i] for i in order]
        versions = [versions[i] for i in order]
        segments = [segments[i] for i in order]
    width = model.window_seconds
    width_us = width * 1_000_000  # t // 1e6 // width == t // (1e6 * width): window_start_of
    return bulk.PredictionRows(
        prediction_ids=ordered_ids,
        ts_us=ts,
        window_starts=(
            ts // width_us * width
            if isinstance(ts, np.ndarray)
            else [t // width_us * width for t in ts]
        ),
        scores=scores,
        probabilities=probabilities,
        model_versions=versions,
        segments=segments,
    )


def prediction_result(model: ModelShape, sent: int, accepted: int | None) -> PredictionResult:
    """The answer to a batch of `sent` records of which `accepted` were inserted (None:
    nothing was, the model changed after the batch was validated against it)."""
    if accepted is None:
        raise ModelChanged(model.id)
    return PredictionResult(accepted=accepted, duplicates=sent - accepted)


def ingest_predictions(
    *,
    session: Session,
    model: ModelShape,
    batch: PredictionColumns,
    now_us: int,
    max_future_s: float,
) -> PredictionResult:
    rows = prepare_predictions(model=model, batch=batch, now_us=now_us, max_future_s=max_future_s)
    accepted = bulk.insert_predictions(
        session=session,
        model_id=model.id,
        model_version=model.updated_at,
        rows=rows,
        received_us=now_us,
    )
    return prediction_result(model, len(batch), accepted)


def _binary_label(value: bool | int | str) -> int | None:
    if isinstance(value, str):
        return None
    return int(value) if value in (0, 1) else None


def _labels(model: ModelShape, items: Sequence[ActualIn]) -> list[int]:
    """Stored label per item: 0/1, or the class's index for multiclass."""
    labels: list[int] = []
    errors = []
    if model.task == "multiclass":
        index = {name: k for k, name in enumerate(model.classes or ())}
        for i, item in enumerate(items):
            k = index.get(item.label) if isinstance(item.label, str) else None
            if k is None:
                shown = ", ".join(map(repr, list(index)[:10]))
                errors.append(
                    item_error(i, "label", f"label must be one of the model's classes: {shown}")
                )
            else:
                labels.append(k)
    else:
        for i, item in enumerate(items):
            label = _binary_label(item.label)
            if label is None:
                errors.append(item_error(i, "label", "binary label must be 0, 1, true or false"))
            else:
                labels.append(label)
    if errors:
        raise Invalid(errors)
    return labels


def ingest_actuals(
    *,
    session: Session,
    model: ModelShape,
    items: Sequence[ActualIn],
    now_us: int,
    max_future_s: float,
) -> ActualResult:
    errors = _timestamp_errors(items, now_us=now_us, max_future_s=max_future_s)
    if errors:
        raise Invalid(errors)
    labels = _labels(model, items)

    last: dict[str, int] = {}
    for i, item in enumerate(items):
        last[item.prediction_id] = i  # last write wins, also within a batch
    ids = sorted(last)
    found = bulk.find_predictions(session=session, model_id=model.id, prediction_ids=ids)
    ts_of = {
        pid: as_utc_micros(t) if (t := items[i].timestamp) else now_us for pid, i in last.items()
    }
    # Past the model's retention with no stored prediction: it could never be joined
    # (its prediction would be past retention too), so it is not kept (API.md "expired").
    expired_ids = {
        pid
        for pid in ids
        if pid not in found
        and horizon.actual_expired(
            ts_us=ts_of[pid], now_us=now_us, retention_days=model.retention_days
        )
    }
    kept = [pid for pid in ids if pid not in expired_ids]
    picked = [last[pid] for pid in kept]
    rows = bulk.ActualRows(
        prediction_ids=kept,
        labels=[labels[i] for i in picked],
        weights=[items[i].weight for i in picked],
        ts_us=[ts_of[pid] for pid in kept],
        pending=[pid not in found for pid in kept],
        window_starts=[found.get(pid) for pid in kept],
    )
    if kept:
        bulk.upsert_actuals(session=session, model_id=model.id, rows=rows, received_us=now_us)
    dirty.mark_dirty(session=session, model_id=model.id, window_starts=found.values())
    matched = sum(1 for item in items if item.prediction_id in found)
    expired = sum(1 for item in items if item.prediction_id in expired_ids)
    return ActualResult(
        accepted=len(items) - expired,
        matched=matched,
        pending=len(items) - matched - expired,
        expired=expired,
    )


def has_data(session: Session, model_id: str) -> bool:
    """Does the model hold any stored prediction or actual? (A registry hook.)"""
    return bool(
        session.scalar(select(exists().where(Prediction.model_id == model_id)))
        or session.scalar(select(exists().where(Actual.model_id == model_id)))
    )
