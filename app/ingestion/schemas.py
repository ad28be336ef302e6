"""Pydantic shapes of ingestion (API.md "Predictions", "Actuals").

Task-specific checks (binary needs `score`, multiclass `probabilities`) need the model,
so they live in the service and report errors in the same index/field/message form.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
)

MAX_SEGMENTS = 16


def _rfc3339_string(value: Any) -> Any:
    # Pydantic would take a bare number as unix time; the contract says RFC 3339 strings.
    if not isinstance(value, str):
        raise ValueError(
            "timestamp must be an RFC 3339 string with an offset, e.g. 2026-11-20T10:00:00Z"
        )
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_string)]
Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]
PredictionId = Annotated[str, Field(min_length=1, max_length=256)]
SEGMENT_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
SEGMENT_KEY_RE = re.compile(SEGMENT_KEY_PATTERN)
SegmentKey = Annotated[str, Field(pattern=SEGMENT_KEY_PATTERN)]
SegmentValue = Annotated[str, Field(min_length=1, max_length=256)]


class PredictionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: PredictionId
    timestamp: Timestamp | None = Field(
        default=None, description="event time; default: time received"
    )
    score: Probability | None = Field(default=None, description="binary: P(positive class)")
    probabilities: dict[str, Probability] | None = Field(default=None, description="multiclass")
    model_version: str = Field(default="", max_length=128)
    segments: dict[SegmentKey, SegmentValue] | None = Field(
        default=None, description="string -> string, at most 16 keys; keys [A-Za-z0-9_.-]{1,64}"
    )

    @field_validator("segments")
    @classmethod
    def _few_segments(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and len(v) > MAX_SEGMENTS:
            raise ValueError(f"at most {MAX_SEGMENTS} segment keys")
        return v


class PredictionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    predictions: list[PredictionIn] = Field(min_length=1)


class IngestPredictionsOut(BaseModel):
    accepted: int = Field(description="newly stored")
    duplicates: int = Field(description="prediction_id already stored (or repeated in the batch)")


# Strict members: "1" or 1.0 are not silently taken for a binary label.
Label = Annotated[
    StrictBool | StrictInt | StrictStr,
    Field(description="binary: 0/1 or true/false; multiclass: a class name"),
]


class ActualIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: PredictionId
    label: Label
    timestamp: Timestamp | None = None
    weight: float = Field(default=1.0, gt=0.0, allow_inf_nan=False, strict=True)


class ActualBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actuals: list[ActualIn] = Field(min_length=1)


class IngestActualsOut(BaseModel):
    accepted: int
    matched: int = Field(description="have a stored prediction")
    pending: int = Field(description="no stored prediction yet; joined when it arrives")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def as_utc_micros(ts: datetime) -> int:
    """Exact epoch microseconds (float timestamp() would round)."""
    return (ts - _EPOCH) // _MICROSECOND
