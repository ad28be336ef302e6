"""A prediction batch as the service reads it: one list per field.

Two decoders fill it: the msgspec fast path (fast_decode.py) straight from the body's
bytes, timestamps parsed as one column and each distinct segment set decoded once; and
`PredictionColumns.of` from validated records (Pydantic's PredictionIn, when the fast
path leaves a body to it). Both must give the same columns for the same body
(tests/ingestion/test_fast_decode.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from app.ingestion.timestamps import Int64s, utc_micros_each


class PredictionFields(Protocol):
    """What is read of a validated prediction record (schemas.PredictionIn)."""

    @property
    def prediction_id(self) -> str: ...
    @property
    def timestamp(self) -> datetime | None: ...
    @property
    def score(self) -> float | None: ...
    @property
    def probabilities(self) -> dict[str, float] | None: ...
    @property
    def model_version(self) -> str: ...
    @property
    def segments(self) -> dict[str, str] | None: ...


@dataclass(frozen=True, slots=True)
class PredictionColumns:
    """Record i's fields at index i of each list, in the order sent."""

    prediction_ids: list[str]
    # Epoch microseconds: a numpy column when every record sent one and they were parsed
    # as a column (timestamps.parse_utc_micros), else a list (None: not sent).
    timestamps_us: list[int | None] | Int64s
    scores: list[float | None]
    probabilities: list[dict[str, float] | None]
    model_versions: list[str]
    segments: list[str | None]  # as stored (segments_text); None: none, or empty

    def __len__(self) -> int:
        return len(self.prediction_ids)

    @classmethod
    def of(cls, items: Sequence[PredictionFields]) -> PredictionColumns:
        return cls(
            prediction_ids=[item.prediction_id for item in items],
            timestamps_us=utc_micros_each([item.timestamp for item in items]),
            scores=[item.score for item in items],
            probabilities=[item.probabilities for item in items],
            model_versions=[item.model_version for item in items],
            segments=_segments_each([item.segments for item in items]),
        )


def segments_text(segments: dict[str, str] | None) -> str | None:
    """The stored form of a record's segments: JSON with sorted keys, None for none."""
    return json.dumps(dict(sorted(segments.items()))) if segments else None


def _segments_each(given: list[dict[str, str] | None]) -> list[str | None]:
    """segments_text of each; a serving system sends few distinct segment sets, so each
    distinct one is encoded once."""
    # Most batches carry one segment set (or none): dict == runs in C.
    if given and given.count(given[0]) == len(given):
        return [segments_text(given[0])] * len(given)
    cache: dict[tuple[tuple[str, str], ...], str | None] = {}
    out: list[str | None] = []
    for segments in given:
        key = tuple(sorted(segments.items())) if segments else ()
        text = cache.get(key)
        if text is None and key not in cache:
            text = cache[key] = segments_text(dict(key))
        out.append(text)
    return out
