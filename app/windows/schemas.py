"""Metric history shapes (API.md "Metric history")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class ReliabilityBin(BaseModel):
    lower: float
    upper: float
    count: int = Field(description="labeled rows in the bin")
    weight: float = Field(description="Σ w of those rows")
    mean_predicted: float | None = Field(description="Σ w p / Σ w; null when empty")
    observed_rate: float | None = Field(
        description="Σ w y / Σ w (multiclass: top class was right); null when empty"
    )


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
    accuracy: float | None = Field(description="binary: p ≥ 0.5 is positive; multiclass: arg-max")
    class_rates: dict[str, float] | None = Field(
        default=None, description="multiclass: weighted class distribution of the labels"
    )
    class_log_loss: dict[str, float | None] | None = Field(
        default=None, description="multiclass: log loss of the rows of each true class"
    )
    reliability: list[ReliabilityBin] | None = Field(
        default=None,
        description="10 equal-width bins of the predicted probability (binary: score; "
        "multiclass: top-class confidence) over the labeled rows",
    )
    ece: float | None = Field(
        default=None,
        description="expected calibration error: Σ_b (W_b/W) |mean_predicted_b − observed_rate_b|",
    )
    calibration_gap: float | None = Field(
        default=None, description="log_loss − expected_log_loss (> 0: worse than it expects)"
    )
    computed_at: datetime
    source: Literal["database", "spark"] = Field(
        default="database",
        description="which path computed the window: the service's compute pass over its "
        "database, or `lossmon spark compute` over lake files",
    )


class HistoryOut(BaseModel):
    model_id: str
    window: str
    model_version: str | None = None
    segments: list[str] = Field(default_factory=list)
    windows: list[WindowOut]
    next_cursor: str | None = Field(
        default=None, description="pass as ?cursor= for the next page; null on the last page"
    )


def _ts(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def window_out(values: dict[str, Any]) -> WindowOut:
    data = dict(values)
    data["start"] = _ts(int(data.pop("window_start")))
    data["end"] = _ts(int(data.pop("window_end")))
    data.pop("model_id", None)
    return WindowOut(**data)
