"""Ingestion: validate the whole batch, then store it with bulk statements.

Nothing of a batch is written unless every record is valid. Predictions are immutable
(first write wins, re-sends are counted as duplicates); actuals are last-write-wins.
Every write marks the affected windows dirty in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.api.errors import BatchValidationError, item_error
from app.ingestion import bulk
from app.ingestion.schemas import ActualIn, PredictionIn, as_utc_micros
from app.models.models import MonitoredModel
from app.windows import dirty


@dataclass(frozen=True, slots=True)
class PredictionResult:
    accepted: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class ActualResult:
    accepted: int
    matched: int
    pending: int


def window_start_of(ts_us: int, window_seconds: int) -> int:
    """Start (epoch seconds) of the UTC-epoch-aligned tumbling window holding ts."""
    return (ts_us // 1_000_000) // window_seconds * window_seconds


def _segments_json(items: Sequence[PredictionIn]) -> list[str | None]:
    """JSON text per row; a serving system sends few distinct segment sets, so encode
    each distinct one once."""
    cache: dict[tuple[tuple[str, str], ...], str] = {}
    out: list[str | None] = []
    for item in items:
        if not item.segments:
            out.append(None)
            continue
        key = tuple(sorted(item.segments.items()))
        text = cache.get(key)
        if text is None:
            text = cache[key] = json.dumps(dict(key))
        out.append(text)
    return out


def _check_binary_predictions(items: Sequence[PredictionIn]) -> list[dict[str, Any]]:
    errors = []
    for i, item in enumerate(items):
        if item.probabilities is not None:
            errors.append(
                item_error(i, "probabilities", "probabilities is for multiclass models; send score")
            )
    return errors


def ingest_predictions(
    *, session: Session, model: MonitoredModel, items: Sequence[PredictionIn], now_us: int
) -> PredictionResult:
    errors = _check_binary_predictions(items)
    if errors:
        raise BatchValidationError(errors)

    first: dict[str, PredictionIn] = {}
    for item in items:
        first.setdefault(item.prediction_id, item)  # first write wins, also within a batch
    ordered = [first[pid] for pid in sorted(first)]  # sorted: same lock order everywhere
    ts = [as_utc_micros(p.timestamp) if p.timestamp else now_us for p in ordered]
    rows = bulk.PredictionRows(
        prediction_ids=[p.prediction_id for p in ordered],
        ts_us=ts,
        window_starts=[window_start_of(t, model.window_seconds) for t in ts],
        scores=[p.score for p in ordered],
        model_versions=[p.model_version for p in ordered],
        segments=_segments_json(ordered),
    )
    accepted, windows = bulk.insert_predictions(
        session=session, model_id=model.id, rows=rows, received_us=now_us
    )
    dirty.mark_dirty(session=session, model_id=model.id, window_starts=windows)
    return PredictionResult(accepted=accepted, duplicates=len(items) - accepted)


def _binary_label(value: bool | int) -> int | None:
    return int(value) if value in (0, 1) else None


def ingest_actuals(
    *, session: Session, model: MonitoredModel, items: Sequence[ActualIn], now_us: int
) -> ActualResult:
    labels: list[int] = []
    errors = []
    for i, item in enumerate(items):
        label = _binary_label(item.label)
        if label is None:
            errors.append(item_error(i, "label", "binary label must be 0, 1, true or false"))
        else:
            labels.append(label)
    if errors:
        raise BatchValidationError(errors)

    last: dict[str, int] = {}
    for i, item in enumerate(items):
        last[item.prediction_id] = i  # last write wins, also within a batch
    ids = sorted(last)
    found = bulk.find_predictions(session=session, model_id=model.id, prediction_ids=ids)
    picked = [last[pid] for pid in ids]
    rows = bulk.ActualRows(
        prediction_ids=ids,
        labels=[labels[i] for i in picked],
        weights=[items[i].weight for i in picked],
        ts_us=[as_utc_micros(t) if (t := items[i].timestamp) else now_us for i in picked],
        pending=[pid not in found for pid in ids],
    )
    bulk.upsert_actuals(session=session, model_id=model.id, rows=rows, received_us=now_us)
    dirty.mark_dirty(session=session, model_id=model.id, window_starts=found.values())
    matched = sum(1 for item in items if item.prediction_id in found)
    return ActualResult(accepted=len(items), matched=matched, pending=len(items) - matched)
