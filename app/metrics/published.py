"""The published fields of one window (API.md "Metric history"), as computed.

Every float is a plain Python float so the result can go straight into the database
and JSON without numpy scalar types leaking out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.metrics.calibration import ReliabilityBin

# Published quantile fields of ℓ and their levels q (API.md: the smallest ℓ_i whose
# cumulative weight, rows sorted by ℓ, reaches q·Σw). Every producer (the numpy pass,
# Spark) computes the levels listed here; each also needs its WindowStats attribute.
QUANTILE_FIELDS: Mapping[str, float] = {
    "log_loss_median": 0.5,
    "log_loss_p90": 0.9,
    "log_loss_p99": 0.99,
}


@dataclass(frozen=True, slots=True)
class WindowStats:
    predictions: int  # all predictions in the window
    labeled: int  # n joined rows
    label_coverage: float | None  # labeled / predictions (None if predictions == 0)
    weight_sum: float  # sum of w over labeled rows (0.0 if none)
    positive_rate: float | None
    log_loss: float | None
    baseline_log_loss: float | None
    skill: float | None  # 1 - L / baseline; None when baseline == 0 or L is None
    log_loss_stderr: float | None
    log_loss_median: float | None
    log_loss_p90: float | None
    log_loss_p99: float | None
    # Mean over ALL predictions (labeled or not, unweighted) of the binary entropy of
    # the clipped score: what the model expects to score if calibrated.
    expected_log_loss: float | None
    accuracy: float | None  # sum w [(p >= 0.5) == y] / sum w
    # Multiclass only: weighted class distribution of the labeled rows (index = class).
    class_rates: tuple[float, ...] | None = None
    # Multiclass only: log loss of the rows of each true class (None: no row of that
    # class, or only zero-weight ones).
    class_log_loss: tuple[float | None, ...] | None = None
    # Binary: on the raw score vs y; multiclass: on the top-label confidence vs "the
    # arg-max was right".
    reliability: tuple[ReliabilityBin, ...] | None = None
    ece: float | None = None
    # log_loss - expected_log_loss (as reported): > 0 the model does worse than it
    # expects of itself (typically overconfident), < 0 better than it expects.
    calibration_gap: float | None = None


def unscored(
    predictions: int, labeled: int, weight_sum: float, expected: float | None
) -> WindowStats:
    """A window with nothing (positively weighted) to score: only counts, coverage and
    the model's own expectation are defined."""
    return WindowStats(
        predictions=predictions,
        labeled=labeled,
        label_coverage=labeled / predictions if predictions else None,
        weight_sum=weight_sum,
        positive_rate=None,
        log_loss=None,
        baseline_log_loss=None,
        skill=None,
        log_loss_stderr=None,
        **dict.fromkeys(QUANTILE_FIELDS),
        expected_log_loss=expected,
        accuracy=None,
    )
