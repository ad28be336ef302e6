"""Spark's aggregated row of a window (or slice) as the mergeable window statistics
(app/metrics/window_stats.py), which finalise it exactly as the SQL path's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.metrics import WindowStats
from app.metrics.published import QUANTILE_FIELDS
from app.metrics.window_stats import BINARY, MULTICLASS, WindowSums, finalise

BINS = 10


def _f(row: Mapping[str, Any], name: str) -> float:
    value = row[name]
    return 0.0 if value is None else float(value)


def window_sums(row: Mapping[str, Any], n_classes: int) -> WindowSums:
    """`n_classes` 0 = binary (class sums of labels 0 and 1)."""
    k = max(n_classes, 2)
    labeled = int(row["labeled"])
    return WindowSums(
        task=MULTICLASS if n_classes else BINARY,
        predictions=int(row["predictions"]),
        entropy_sum=_f(row, "entropy_sum"),
        labeled=labeled,
        weight_sum=_f(row, "w_sum"),
        weight_sq_sum=_f(row, "w2_sum"),
        loss_sum=_f(row, "wl_sum"),
        loss_shift=_f(row, "shift"),
        loss_w2_sum=_f(row, "w2l_sum"),
        loss_sq_w2_sum=_f(row, "spread"),
        correct_weight=_f(row, "w_correct"),
        class_weight=tuple(_f(row, f"w_c{i}") for i in range(k)),
        class_loss_sum=tuple(_f(row, f"wl_c{i}") for i in range(k)),
        bin_count=tuple(int(row[f"bin{b}_n"]) for b in range(BINS)),
        bin_weight=tuple(_f(row, f"bin{b}_w") for b in range(BINS)),
        bin_predicted=tuple(_f(row, f"bin{b}_wp") for b in range(BINS)),
        bin_outcome=tuple(_f(row, f"bin{b}_wy") for b in range(BINS)),
        loss_values=None,
        loss_weights=None,
        # Quantiles from Spark's histogram (aggregate.py; within QUANTILE_ACCURACY), one
        # column per field; None when the group has no labeled row.
        quantiles=None
        if any(row[name] is None for name in QUANTILE_FIELDS)
        else {name: float(row[name]) for name in QUANTILE_FIELDS},
    )


def window_stats(row: Mapping[str, Any], n_classes: int) -> WindowStats:
    return finalise(window_sums(row, n_classes))
