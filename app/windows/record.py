"""The window record: the one list of a window's published fields, and every conversion.

    WindowStats (app.metrics, finalised from WindowSums)
      -> stored_values(): the row of window_metrics / slice_metrics (columns: column_mixin)
      -> history JSON fragment (app/windows/history_json.py, fast path: SCALAR_FIELDS
         through one json.dumps, JSON_FIELDS spliced in as stored text)
      -> alert payload (alert_payload(): the same fragment, parsed)
      -> Prometheus gauges of each model's latest window (GAUGES)
    and the documented response model WindowOut (window_out_model()).

Adding a metric field: compute it in app.metrics (a quantile: one QUANTILE_FIELDS entry
in published.py; otherwise WindowSums + finalise), add one WindowField here, and a
migration adding the column (tests/test_migrations.py checks the two agree); the full
list, shown by log_loss_p99, is in docs/architecture.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, create_model
from sqlalchemy import JSON, BigInteger, Float, Integer, String
from sqlalchemy.orm import InstrumentedAttribute, mapped_column
from sqlalchemy.types import TypeEngine

from app.db import UTCDateTime
from app.metrics import WindowStats

Classes = Sequence[str] | None

# Which path computed a window (API.md "Lake-scale computation on Apache Spark").
DATABASE = "database"
SPARK = "spark"


class ReliabilityBin(BaseModel):
    lower: float
    upper: float
    count: int = Field(description="labeled rows in the bin")
    weight: float = Field(description="Σ w of those rows")
    mean_predicted: float | None = Field(description="Σ w p / Σ w; null when empty")
    observed_rate: float | None = Field(
        description="Σ w y / Σ w (multiclass: top class was right); null when empty"
    )


def _per_class(values: Sequence[float | None] | None, classes: Classes) -> Any:
    if values is None or classes is None:
        return None
    return dict(zip(classes, values, strict=True))


def _reliability(stats: WindowStats, classes: Classes) -> Any:
    if stats.reliability is None:
        return None
    return [
        {
            "lower": b.lower,
            "upper": b.upper,
            "count": b.count,
            "weight": b.weight,
            "mean_predicted": b.mean_predicted,
            "observed_rate": b.observed_rate,
        }
        for b in stats.reliability
    ]


@dataclass(frozen=True, slots=True)
class WindowField:
    name: str
    annotation: Any  # its type in the API (WindowOut)
    column: type[TypeEngine[Any]] | TypeEngine[Any]  # Integer, Float, JSON, String(n)
    description: str | None = None
    # Nullable in the API and the table; `optional` fields may also be absent in input.
    nullable: bool = True
    optional: bool = False
    # (metric name, help) when each model's latest window exports it on /metrics.
    gauge: tuple[str, str] | None = None
    # From the computed stats; default: the WindowStats attribute of the same name.
    value: Callable[[WindowStats, Classes], Any] | None = None
    # Not a metric but where the row came from: set by the producer (stored_values'
    # `source`), listed after computed_at in the API, defaulted in the table.
    provenance: bool = False
    default: Any = None

    @property
    def is_json(self) -> bool:
        return self.column is JSON


def _f(name: str, description: str | None = None, **kw: Any) -> WindowField:
    return WindowField(name, float | None, Float, description, **kw)


# In the order of the API's window object (after start and end).
FIELDS: tuple[WindowField, ...] = (
    WindowField(
        "predictions",
        int,
        Integer,
        "all predictions in the window",
        nullable=False,
        gauge=("lossmon_window_predictions", "Predictions in the latest window."),
    ),
    WindowField(
        "labeled",
        int,
        Integer,
        "predictions that have an actual",
        nullable=False,
        gauge=("lossmon_window_labeled", "Predictions with an actual in the latest window."),
    ),
    _f(
        "label_coverage",
        gauge=(
            "lossmon_window_label_coverage",
            "Share of the latest window's predictions that have an actual.",
        ),
    ),
    WindowField("weight_sum", float, Float, "Σ w over labeled rows", nullable=False),
    _f("positive_rate"),
    _f(
        "log_loss",
        gauge=("lossmon_window_log_loss", "Weighted mean log loss of the latest window."),
    ),
    _f(
        "baseline_log_loss",
        "entropy of the window's base rate",
        gauge=(
            "lossmon_window_baseline_log_loss",
            "Log loss of the naive baseline (entropy of the base rate) in the latest window.",
        ),
    ),
    _f(
        "skill",
        "1 − log_loss / baseline_log_loss",
        gauge=("lossmon_window_skill", "1 - log_loss / baseline_log_loss of the latest window."),
    ),
    _f("log_loss_stderr"),
    _f("log_loss_median"),
    _f("log_loss_p90"),
    _f(
        "log_loss_p99",
        "the tail: 99 % of the weight has a smaller loss; null for a window last "
        "computed before this field existed",
    ),
    _f(
        "expected_log_loss",
        gauge=(
            "lossmon_window_expected_log_loss",
            "Log loss the model expects from its own scores (mean score entropy), latest window.",
        ),
    ),
    _f("accuracy", "binary: p ≥ 0.5 is positive; multiclass: arg-max"),
    WindowField(
        "class_rates",
        dict[str, float] | None,
        JSON,
        "multiclass: weighted class distribution of the labels",
        optional=True,
        value=lambda s, c: _per_class(s.class_rates, c),
    ),
    WindowField(
        "class_log_loss",
        dict[str, float | None] | None,
        JSON,
        "multiclass: log loss of the rows of each true class",
        optional=True,
        value=lambda s, c: _per_class(s.class_log_loss, c),
    ),
    WindowField(
        "reliability",
        list[ReliabilityBin] | None,
        JSON,
        "10 equal-width bins of the predicted probability (binary: score; "
        "multiclass: top-class confidence) over the labeled rows",
        optional=True,
        value=_reliability,
    ),
    _f(
        "ece",
        "expected calibration error: Σ_b (W_b/W) |mean_predicted_b − observed_rate_b|",
        optional=True,
        gauge=("lossmon_window_ece", "Expected calibration error (10 bins) of the latest window."),
    ),
    _f(
        "calibration_gap",
        "log_loss − expected_log_loss (> 0: worse than it expects)",
        optional=True,
        gauge=(
            "lossmon_window_calibration_gap",
            "log_loss - expected_log_loss of the latest window (> 0: worse than it expects).",
        ),
    ),
    WindowField(
        "source",
        Literal["database", "spark"],
        String(16),
        "which path computed the window: the service's compute pass over its "
        "database, or `lossmon spark compute` over lake files",
        nullable=False,
        optional=True,
        provenance=True,
        default=DATABASE,
    ),
)

NAMES = tuple(f.name for f in FIELDS)
# Stored as JSON: read back as text and spliced into the history unparsed.
JSON_FIELDS = tuple(f.name for f in FIELDS if f.is_json)
SCALAR_FIELDS = tuple(f.name for f in FIELDS if not f.is_json)
# (metric name, field, help) of the gauges of each model's latest window.
GAUGES = tuple((f.gauge[0], f.name, f.gauge[1]) for f in FIELDS if f.gauge is not None)


def stored_values(
    *,
    model_id: str,
    window_start: int,
    window_seconds: int,
    stats: WindowStats,
    now: datetime,
    classes: Classes = None,
    source: str = DATABASE,
) -> dict[str, object]:
    """A computed window as the row stored (whole model or, plus its slice keys, a slice)."""
    values: dict[str, object] = {
        "model_id": model_id,
        "window_start": window_start,
        "window_end": window_start + window_seconds,
    }
    for f in FIELDS:
        if f.provenance:
            continue
        values[f.name] = getattr(stats, f.name) if f.value is None else f.value(stats, classes)
    values["computed_at"] = now
    values["source"] = source
    return values


def column_mixin() -> type[Any]:
    """The metric columns shared by window_metrics and slice_metrics (a declarative
    mixin built from FIELDS; the migrations must create the same columns)."""
    attrs: dict[str, Any] = {
        "window_end": mapped_column(BigInteger, nullable=False),
        **{
            f.name: mapped_column(
                f.column,
                nullable=f.nullable,
                server_default=f.default if f.provenance else None,
            )
            for f in FIELDS
        },
        "computed_at": mapped_column(UTCDateTime(), nullable=False),
    }
    return type("MetricColumns", (), attrs)


def window_out_model() -> type[BaseModel]:
    """WindowOut, the documented window object of GET .../metrics."""
    definitions: dict[str, Any] = {"start": (datetime, ...), "end": (datetime, ...)}
    for f in FIELDS:
        if not f.provenance:
            default: Any = None if f.optional else ...
            definitions[f.name] = (f.annotation, Field(default, description=f.description))
    definitions["computed_at"] = (datetime, ...)
    for f in FIELDS:
        if f.provenance:
            definitions[f.name] = (f.annotation, Field(f.default, description=f.description))
    model: type[BaseModel] = create_model("WindowOut", **definitions)
    return model


def alert_payload(fragment_text: str) -> dict[str, Any]:
    """The window as a webhook / alert reports it: exactly what GET .../metrics (with
    ?model_version= or ?segment= for a slice) returns for it."""
    payload: dict[str, Any] = json.loads(fragment_text)
    return payload


def row_values(row: Any) -> dict[str, object]:
    """A stored window (ORM row) as the dict stored_values() builds."""
    return {c.name: getattr(row, c.name) for c in row.__table__.columns}


def column(table: Any, name: str) -> InstrumentedAttribute[Any]:
    """A metric column of window_metrics / slice_metrics, for queries (the columns are
    built from FIELDS, so the type checker cannot see them as class attributes)."""
    if name not in _BY_NAME and name not in ("window_end", "computed_at"):
        raise AttributeError(f"no window field {name!r}")
    attribute: InstrumentedAttribute[Any] = getattr(table, name)
    return attribute


def field_of(name: str) -> WindowField:
    return _BY_NAME[name]


_BY_NAME: Mapping[str, WindowField] = {f.name: f for f in FIELDS}
