"""One window's metrics as the row dict stored and served (whole model or a slice)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np

from app.metrics import WindowStats, multiclass_stats_by_group, stats_by_group
from app.windows.models import DATABASE, MetricColumns
from app.windows.reader import JoinedRows


def compute_stats(
    rows: JoinedRows, eps: float, group_keys: np.ndarray | None = None
) -> dict[int, WindowStats]:
    """Stats per group key (default: per window start)."""
    if len(rows) == 0:
        return {}  # (a multiclass read of no rows does not know K)
    keys = rows.window_starts if group_keys is None else group_keys
    if rows.probabilities is not None:
        return multiclass_stats_by_group(keys, rows.probabilities, rows.labels, rows.weights, eps)
    return stats_by_group(keys, rows.scores, rows.labels, rows.weights, eps)


def _per_class(
    classes: Sequence[str] | None, values: Sequence[float | None] | None
) -> dict[str, float | None] | None:
    if values is None or classes is None:
        return None
    return dict(zip(classes, values, strict=True))


def _reliability(stats: WindowStats) -> list[dict[str, object]] | None:
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


def metric_values(
    *,
    model_id: str,
    window_start: int,
    window_seconds: int,
    stats: WindowStats,
    now: datetime,
    classes: Sequence[str] | None = None,
    source: str = DATABASE,
) -> dict[str, object]:
    return {
        "model_id": model_id,
        "window_start": window_start,
        "window_end": window_start + window_seconds,
        "predictions": stats.predictions,
        "labeled": stats.labeled,
        "weight_sum": stats.weight_sum,
        "label_coverage": stats.label_coverage,
        "positive_rate": stats.positive_rate,
        "log_loss": stats.log_loss,
        "baseline_log_loss": stats.baseline_log_loss,
        "skill": stats.skill,
        "log_loss_stderr": stats.log_loss_stderr,
        "log_loss_median": stats.log_loss_median,
        "log_loss_p90": stats.log_loss_p90,
        "expected_log_loss": stats.expected_log_loss,
        "accuracy": stats.accuracy,
        "class_rates": _per_class(classes, stats.class_rates),
        "class_log_loss": _per_class(classes, stats.class_log_loss),
        "reliability": _reliability(stats),
        "ece": stats.ece,
        "calibration_gap": stats.calibration_gap,
        "computed_at": now,
        "source": source,
    }


def row_values(row: MetricColumns) -> dict[str, object]:
    """A stored window as the same dict metric_values() builds."""
    return {c.name: getattr(row, c.name) for c in row.__table__.columns}  # type: ignore[attr-defined]
