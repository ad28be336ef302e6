"""Pydantic shapes of the models registry (API.md "Models")."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict, WithJsonSchema

from app.json_types import NO_NUL, DescriptionText

MODEL_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
# At most 99999m, 9999h or 999d: the bound is in the pattern so the schema says it.
WINDOW_PATTERN = r"^(?:[1-9][0-9]{0,4}m|[1-9][0-9]{0,3}h|[1-9][0-9]{0,2}d)$"
_WINDOW_RE = re.compile(r"^([1-9][0-9]*)([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}


def window_seconds(window: str) -> int:
    """'15m' -> 900. Raises ValueError with a message a user can act on."""
    m = _WINDOW_RE.match(window)
    if not m or not re.match(WINDOW_PATTERN, window):
        raise ValueError("window must look like 15m, 1h or 1d (at most 99999m, 9999h or 999d)")
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]


ClassName = Annotated[str, StringConstraints(pattern=NO_NUL, min_length=1, max_length=128)]

_CLASSES_SCHEMA = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": NO_NUL},
    "minItems": 2,
    "maxItems": 1000,
    "uniqueItems": True,
    "description": "multiclass only: the class names (at least 2, unique); actuals name "
    "one of them as the label",
}

# JSON Schema for the cross-field rule below, so generated clients (and schemathesis)
# know that classes come with, and only with, task "multiclass".
_TASK_CLASSES_SCHEMA: JsonDict = {
    "allOf": [
        {
            "if": {"properties": {"task": {"const": "multiclass"}}, "required": ["task"]},
            "then": {"required": ["classes"]},
        },
        {
            "if": {"required": ["classes"]},
            "then": {"required": ["task"], "properties": {"task": {"const": "multiclass"}}},
        },
    ]
}


class ModelIn(BaseModel):
    """PUT body. On update, fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_TASK_CLASSES_SCHEMA)

    task: Literal["binary", "multiclass"] = Field(
        default="binary", description="multiclass needs classes"
    )
    window: str = Field(
        default="1h",
        pattern=WINDOW_PATTERN,
        description="tumbling window: Nm, Nh or Nd (at most 99999m, 9999h or 999d)",
    )
    description: DescriptionText = ""
    classes: Annotated[list[ClassName] | None, WithJsonSchema(_CLASSES_SCHEMA)] = Field(
        default=None, min_length=2, max_length=1000
    )
    # Accepted and echoed back so existing clients keep working; no metric uses it
    # (each window's baseline is the entropy of its own base rate).
    reference_base_rate: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        strict=True,
        allow_inf_nan=False,
        description="Deprecated: stored and returned, used by no metric.",
        json_schema_extra={"deprecated": True},
    )
    clip_eps: float = Field(default=1e-15, gt=0, lt=0.5, strict=True, allow_inf_nan=False)
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        strict=True,
        description="delete raw predictions and actuals of windows that ended longer ago "
        "(window metrics are kept); null: keep forever",
    )

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        window_seconds(v)
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str] | None) -> list[str] | None:
        # min_length=2 is checked by the field itself; JSON Schema's uniqueItems is not.
        if v is not None and len(set(v)) != len(v):
            raise ValueError("class names must be unique")
        return v

    @model_validator(mode="after")
    def _task_classes(self) -> ModelIn:
        if "classes" in self.model_fields_set and self.classes is None:
            raise ValueError("classes must be a list of class names (leave it out for binary)")
        if self.task == "binary" and self.classes is not None:
            raise ValueError("classes is only for task 'multiclass'")
        if self.task == "multiclass" and self.classes is None:
            raise ValueError('task \'multiclass\' needs classes, e.g. ["cat", "dog"]')
        return self


class ModelOut(BaseModel):
    model_id: str
    task: str
    window: str
    window_seconds: int
    description: str
    classes: list[str] | None
    reference_base_rate: float | None
    clip_eps: float
    retention_days: int | None = None
    created_at: datetime
    updated_at: datetime


class ModelList(BaseModel):
    models: list[ModelOut]
    next_cursor: str | None = Field(
        default=None, description="pass as ?cursor= for the next page; null on the last page"
    )
