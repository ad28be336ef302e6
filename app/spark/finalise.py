"""The published fields of a window (or slice) from the sums Spark aggregated.

Mirrors app/metrics/window.py and multiclass.py decision for decision (which windows
are unscored, the clamped rates, the exact-zero baselines, the reliability bins), so a
window has one definition whichever path computed it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from app.metrics import WindowStats
from app.metrics.baseline import baseline_log_loss, categorical_entropy
from app.metrics.calibration import ReliabilityBin
from app.metrics.window import unscored

BINS = 10


def _f(row: Mapping[str, Any], name: str) -> float:
    value = row[name]
    return 0.0 if value is None else float(value)


def _clamp(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _reliability(
    row: Mapping[str, Any], total: float
) -> tuple[tuple[ReliabilityBin, ...], float | None]:
    bins = []
    weighted_gap = 0.0
    for k in range(BINS):
        weight = _f(row, f"bin{k}_w")
        filled = weight > 0.0
        mean_p = _f(row, f"bin{k}_wp") / weight if filled else None
        rate = _f(row, f"bin{k}_wy") / weight if filled else None
        if mean_p is not None and rate is not None:
            weighted_gap += weight * abs(mean_p - rate)
        bins.append(
            ReliabilityBin(
                lower=k / BINS,
                upper=(k + 1) / BINS,
                count=int(row[f"bin{k}_n"]),
                weight=weight,
                mean_predicted=mean_p,
                observed_rate=rate,
            )
        )
    return tuple(bins), weighted_gap / total


def window_stats(row: Mapping[str, Any], n_classes: int) -> WindowStats:
    predictions = int(row["predictions"])
    labeled = int(row["labeled"])
    expected = _f(row, "entropy_sum") / predictions
    weight_sum = _f(row, "w_sum")
    if labeled == 0 or weight_sum == 0.0:
        return unscored(predictions, labeled, weight_sum, expected)
    log_loss = _f(row, "wl_sum") / weight_sum
    rates: tuple[float, ...] | None = None
    class_log_loss: tuple[float | None, ...] | None = None
    positive_rate: float | None = None
    if n_classes == 0:
        positive_rate = _clamp(_f(row, "w_pos") / weight_sum)
        baseline = baseline_log_loss(positive_rate)
    else:
        rates = tuple(_clamp(_f(row, f"w_c{k}") / weight_sum) for k in range(n_classes))
        baseline = categorical_entropy(np.array(rates, dtype=np.float64))
        class_log_loss = tuple(
            _f(row, f"wl_c{k}") / _f(row, f"w_c{k}") if _f(row, f"w_c{k}") != 0.0 else None
            for k in range(n_classes)
        )
    stderr = (
        math.sqrt(labeled / (labeled - 1) * _f(row, "spread")) / weight_sum
        if labeled >= 2
        else None
    )
    reliability, ece = _reliability(row, weight_sum)
    return WindowStats(
        predictions=predictions,
        labeled=labeled,
        label_coverage=labeled / predictions,
        weight_sum=weight_sum,
        positive_rate=positive_rate,
        log_loss=log_loss,
        baseline_log_loss=baseline,
        skill=None if baseline == 0.0 else 1.0 - log_loss / baseline,
        log_loss_stderr=stderr,
        log_loss_median=float(row["q50"]),
        log_loss_p90=float(row["q90"]),
        expected_log_loss=expected,
        accuracy=_f(row, "w_correct") / weight_sum,
        class_rates=rates,
        class_log_loss=class_log_loss,
        reliability=reliability,
        ece=ece,
        calibration_gap=log_loss - expected,
    )
