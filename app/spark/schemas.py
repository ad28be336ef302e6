"""The HTTP side of `lossmon spark compute --url`: what the job reads before it runs
(GET .../spark-job) and the window statistics it uploads (PUT .../spark-windows).

A row carries the mergeable window statistics of app/metrics/window_stats.py
(`WindowSums.to_dict()`, quantiles supplied), not finished metrics: the server
finalises them with the same code as the database route, so the published fields
cannot differ between the two routes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from app.json_types import NO_NUL, AsInt, Timestamp
from app.metrics.calibration import DEFAULT_BINS
from app.metrics.published import QUANTILE_FIELDS

# JSON-faithful (app/json_types.py): numbers for numbers, true/false for booleans.
# Counts fit the INTEGER columns.
Count = Annotated[StrictInt, Field(ge=0, le=2**31 - 1), AsInt]
Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Bins = Annotated[list[Finite], Field(min_length=DEFAULT_BINS, max_length=DEFAULT_BINS)]
PerClass = Annotated[list[Finite], Field(min_length=2, max_length=1000)]


def _every_quantile(values: dict[str, float]) -> dict[str, float]:
    """Exactly the published quantile fields (read from their one list, so a new
    quantile needs no change here)."""
    if set(values) != set(QUANTILE_FIELDS):
        raise ValueError(f"needs exactly these keys: {', '.join(QUANTILE_FIELDS)}")
    return values


class SparkModel(BaseModel):
    """The model's parameters a run computes with; the upload repeats them, and the
    server refuses it (409) if the model has changed since."""

    task: Literal["binary", "multiclass"]
    window_seconds: Annotated[StrictInt, Field(ge=1, le=10 * 366 * 86_400), AsInt]
    clip_eps: Finite
    classes: list[str] | None = Field(max_length=1000)


class PinnedSlice(BaseModel):
    kind: Literal["version", "segment"]
    key: str = Field(description='the segment key ("" for model versions)')
    value: str


class SparkJobOut(BaseModel):
    model_id: str
    model: SparkModel
    pinned: list[PinnedSlice] = Field(
        description="slices the model's monitors watch: always computed, whatever their rank"
    )
    slice_top_n: int = Field(description="values kept per slice dimension and window")
    max_body_bytes: int = Field(description="the largest upload this server accepts")


class SumsIn(BaseModel):
    """One window's (or slice's) mergeable statistics: the fields of WindowSums
    (app/metrics/window_stats.py) with `quantiles` instead of loss values."""

    model_config = ConfigDict(extra="forbid")

    task: Literal["binary", "multiclass"]
    predictions: Count
    entropy_sum: Finite
    labeled: Count
    weight_sum: Finite
    weight_sq_sum: Finite
    loss_sum: Finite
    loss_shift: Finite
    loss_w2_sum: Finite
    loss_sq_w2_sum: Finite
    correct_weight: Finite
    class_weight: PerClass
    class_loss_sum: PerClass
    bin_count: Annotated[list[Count], Field(min_length=DEFAULT_BINS, max_length=DEFAULT_BINS)]
    bin_weight: Bins
    bin_predicted: Bins
    bin_outcome: Bins
    quantiles: Annotated[dict[str, Finite], AfterValidator(_every_quantile)] | None = Field(
        default=None,
        description=f"{', '.join(QUANTILE_FIELDS)}: all of them, or null when no row is labeled",
    )


class SparkRowIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_start: Annotated[
        StrictInt,
        Field(ge=0, le=253_402_300_799, description="epoch seconds, a multiple of the window"),
        AsInt,
    ]
    kind: Literal["window", "version", "segment"] = Field(
        description='"window": the whole window; else a slice of it'
    )
    key: str = Field(default="", max_length=64, pattern=NO_NUL)
    other: StrictBool = Field(default=False, description="the dimension's values outside the top N")
    value: str = Field(default="", max_length=256, pattern=NO_NUL)
    sums: SumsIn


class SparkWindowsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: SparkModel
    start: Timestamp | None = Field(
        default=None,
        description="the run's range [start, end): the model's spark windows starting in "
        "it are replaced, those not uploaded again are removed; null: the rows' own span",
    )
    end: Timestamp | None = None
    rows: list[SparkRowIn]


class SparkWindowsOut(BaseModel):
    model_id: str
    windows: int = Field(description="windows stored")
    slices: int = Field(description="slice rows stored")
    removed: int = Field(description="spark windows of the range that no longer have data")
