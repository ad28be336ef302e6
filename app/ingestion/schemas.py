"""Pydantic shapes of ingestion (API.md "Predictions", "Actuals").

Task-specific checks (binary needs `score`, multiclass `probabilities`) need the model,
so they live in the service and report errors in the same index/field/message form.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Protocol

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    field_validator,
)
from pydantic.json_schema import JsonDict, WithJsonSchema

from app.json_types import (
    NO_NUL,
    SEGMENT_KEY_PATTERN,
    PredictionIdText,
    SegmentValueText,
    Timestamp,
    VersionText,
    ZeroOrOne,
)

MAX_SEGMENTS = 16


Probability = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]
_PROBABILITY_SCHEMA = {
    "type": "number",
    "minimum": 0,
    "maximum": 1,
    "description": "binary: P(positive class), in [0, 1]",
}
_PROBABILITIES_SCHEMA = {
    "type": "object",
    "additionalProperties": _PROBABILITY_SCHEMA | {"description": "P(class)"},
    "propertyNames": {"minLength": 1, "maxLength": 128, "pattern": NO_NUL},
    "minProperties": 2,
    "maxProperties": 1000,
    "description": "multiclass: probability per class name, over exactly the model's "
    "classes, summing to 1 ± 1e-6",
}
PredictionId = PredictionIdText
SegmentKey = Annotated[str, Field(pattern=SEGMENT_KEY_PATTERN)]
SegmentValue = SegmentValueText

# Pydantic renders constrained keys as patternProperties but leaves other keys open;
# say exactly what is accepted.
Segments = Annotated[
    dict[SegmentKey, SegmentValue],
    WithJsonSchema(
        {
            "type": "object",
            "maxProperties": MAX_SEGMENTS,
            "patternProperties": {
                SEGMENT_KEY_PATTERN: {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 256,
                    "pattern": NO_NUL,
                }
            },
            "additionalProperties": False,
        }
    ),
]


ClassName = Annotated[str, StringConstraints(pattern=NO_NUL, min_length=1, max_length=128)]
Probabilities = Annotated[
    dict[ClassName, Probability],
    Field(
        min_length=2,
        max_length=1000,
        description="multiclass: probability per class name, over exactly the model's "
        "classes, summing to 1 ± 1e-6",
    ),
]

# Exactly one of score / probabilities; which one depends on the model's task, which the
# schema cannot know (a mismatch is a 422 naming the record).
_SCORE_OR_PROBABILITIES: JsonDict = {
    "oneOf": [{"required": ["score"]}, {"required": ["probabilities"]}],
}


class PredictionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_SCORE_OR_PROBABILITIES)

    prediction_id: PredictionId
    timestamp: Timestamp | None = Field(
        default=None, description="event time; default: time received"
    )
    score: Annotated[Probability | None, WithJsonSchema(_PROBABILITY_SCHEMA)] = Field(
        default=None, description="binary: P(positive class), in [0, 1]"
    )
    probabilities: Annotated[Probabilities | None, WithJsonSchema(_PROBABILITIES_SCHEMA)] = None
    model_version: VersionText = ""
    segments: Segments | None = Field(
        default=None, description="string -> string, at most 16 keys; keys [A-Za-z0-9_.-]{1,64}"
    )

    @field_validator("segments")
    @classmethod
    def _few_segments(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        if v is not None and len(v) > MAX_SEGMENTS:
            raise ValueError(f"at most {MAX_SEGMENTS} segment keys")
        return v


class PredictionFields(Protocol):
    """What the service reads of a prediction: a PredictionIn, or the struct the fast
    decoder (fast_decode.py) builds for the same JSON."""

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


class PredictionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    predictions: list[PredictionIn] = Field(min_length=1)


class IngestPredictionsOut(BaseModel):
    accepted: int = Field(description="newly stored")
    duplicates: int = Field(description="prediction_id already stored (or repeated in the batch)")


# Strict: "1" or 1.0 are not silently taken for a binary label.
Label = Annotated[
    StrictBool | ZeroOrOne | ClassName,
    Field(description="binary: 0/1 or true/false; multiclass: a class name"),
]


class ActualIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prediction_id: PredictionId
    label: Label
    timestamp: Timestamp | None = None
    weight: float = Field(
        default=1.0,
        gt=0.0,
        le=1e9,
        allow_inf_nan=False,
        strict=True,
        description="sample weight, > 0 (at most 1e9 so sums stay exact enough)",
    )


class ActualBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    actuals: list[ActualIn] = Field(min_length=1)


class IngestActualsOut(BaseModel):
    accepted: int
    matched: int = Field(description="have a stored prediction")
    pending: int = Field(description="no stored prediction yet; joined when it arrives")
    expired: int = Field(
        default=0,
        description="not kept: the actual's timestamp is older than the model's "
        "retention_days and its prediction is not stored (accepted + expired = sent)",
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def as_utc_micros(ts: datetime) -> int:
    """Exact epoch microseconds (float timestamp() would round)."""
    return (ts - _EPOCH) // _MICROSECOND


def utc_micros_each(timestamps: Iterable[datetime | None]) -> list[int | None]:
    """as_utc_micros of each (None stays None), without a function call per row: a
    1,000-row batch spent ~3% of the server's CPU in those calls (py-spy)."""
    return [None if t is None else (t - _EPOCH) // _MICROSECOND for t in timestamps]
