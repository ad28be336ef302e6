"""Pydantic shapes of ingestion (API.md "Predictions", "Actuals").

Task-specific checks (binary needs `score`, multiclass `probabilities`) need the model,
so they live in the service and report errors in the same index/field/message form.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StrictBool,
    StringConstraints,
    field_validator,
)
from pydantic.json_schema import JsonDict, WithJsonSchema

from app.ingestion.columns import PredictionColumns
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


class PredictionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    predictions: list[PredictionIn] = Field(min_length=1)
    _columns: PredictionColumns | None = PrivateAttr(default=None)

    @classmethod
    def decoded(cls, records: list[Any], columns: PredictionColumns) -> PredictionBatch:
        """A batch a fast decoder read itself (fast_decode.py): its columns as it built
        them; its records as decoded (not PredictionIn: only their count is read)."""
        batch = cls.model_construct(predictions=records)
        batch._columns = columns
        return batch

    def columns(self) -> PredictionColumns:
        """The batch as the service reads it."""
        if self._columns is None:
            self._columns = PredictionColumns.of(self.predictions)
        return self._columns


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
