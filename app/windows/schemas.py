"""Metric history shapes (API.md "Metric history")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


class WindowOut(BaseModel):
    start: datetime
    end: datetime
    predictions: int = Field(description="all predictions in the window")
    labeled: int = Field(description="predictions that have an actual")
    label_coverage: float | None
    weight_sum: float = Field(description="Σ w over labeled rows")
    positive_rate: float | None
    log_loss: float | None
    baseline_log_loss: float | None = Field(description="entropy of the window's base rate")
    skill: float | None = Field(description="1 − log_loss / baseline_log_loss")
    log_loss_stderr: float | None
    log_loss_median: float | None
    log_loss_p90: float | None
    expected_log_loss: float | None
    accuracy: float | None
    computed_at: datetime


class HistoryOut(BaseModel):
    model_id: str
    window: str
    model_version: str | None = None
    segments: list[str] = Field(default_factory=list)
    windows: list[WindowOut]


def _ts(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def window_out(values: dict[str, Any]) -> WindowOut:
    data = dict(values)
    data["start"] = _ts(int(data.pop("window_start")))
    data["end"] = _ts(int(data.pop("window_end")))
    data.pop("model_id", None)
    return WindowOut(**data)
