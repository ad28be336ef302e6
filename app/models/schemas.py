"""Pydantic shapes of the models registry (API.md "Models")."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
_WINDOW_RE = re.compile(r"^([1-9][0-9]{0,5})([mhd])$")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400}
MAX_WINDOW_SECONDS = 366 * 86400


def window_seconds(window: str) -> int:
    """'15m' -> 900. Raises ValueError with a message a user can act on."""
    m = _WINDOW_RE.match(window)
    if not m:
        raise ValueError("window must look like 15m, 1h or 1d (a positive integer and m/h/d)")
    seconds = int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    if seconds > MAX_WINDOW_SECONDS:
        raise ValueError("window must be at most 366d")
    return seconds


ClassName = Annotated[str, Field(min_length=1, max_length=128)]


class ModelIn(BaseModel):
    """PUT body. On update, fields left out keep their current value."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["binary", "multiclass"] = "binary"
    window: str = Field(default="1h", description="tumbling window: Nm, Nh or Nd")
    description: str = Field(default="", max_length=10_000)
    classes: list[ClassName] | None = Field(default=None, max_length=1000)
    reference_base_rate: float | None = Field(default=None, gt=0, lt=1, allow_inf_nan=False)
    clip_eps: float = Field(default=1e-15, gt=0, lt=0.5, allow_inf_nan=False)

    @field_validator("window")
    @classmethod
    def _window(cls, v: str) -> str:
        window_seconds(v)
        return v

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if len(v) < 2:
                raise ValueError("classes needs at least 2 class names")
            if len(set(v)) != len(v):
                raise ValueError("class names must be unique")
        return v

    @model_validator(mode="after")
    def _task_classes(self) -> ModelIn:
        if self.task == "binary" and self.classes is not None:
            raise ValueError("classes is only for task 'multiclass'")
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
    created_at: datetime
    updated_at: datetime


class ModelList(BaseModel):
    models: list[ModelOut]
