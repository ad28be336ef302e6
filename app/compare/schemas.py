"""Champion vs challenger comparison shapes."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Difference(BaseModel):
    n: int = Field(description="rows compared (paired: prediction ids both scored, labeled)")
    weight_sum: float
    log_loss_a: float | None
    log_loss_b: float | None
    difference: float | None = Field(description="log_loss_b − log_loss_a (< 0: b is better)")
    difference_stderr: float | None = Field(
        description="standard error of the difference (paired: of the per-row differences)"
    )


class WindowDifference(Difference):
    start: datetime
    end: datetime


class CompareOut(BaseModel):
    models: list[str] = Field(description="[a, b]")
    versions: list[str] | None = Field(default=None, description="[version of a, version of b]")
    paired: bool = Field(
        description="true: the same prediction ids scored by both (a fair comparison); "
        "false: two versions of one model, which never share a prediction id"
    )
    window: str = Field(description="window size of model a, used for both")
    overall: Difference = Field(description="over the whole [start, end) range")
    windows: list[WindowDifference]
