"""The window values the alert rules look at, as a plain immutable value.

Whole-model windows (window_metrics) and slice windows (slice_metrics) become the same
:class:`WindowPoint`, so every rule is judged the same way on either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.metrics.window import WindowStats


@dataclass(frozen=True, slots=True)
class WindowPoint:
    """One computed metric window, as the evaluator sees it."""

    window_start: int  # epoch seconds
    labeled: int
    weight_sum: float
    log_loss: float | None
    log_loss_stderr: float | None
    skill: float | None
    baseline_log_loss: float | None
    # Defaults only serve hand-built points of the log-loss rules: the evaluator and
    # point_from_stats always fill them, and the rules that read them (label coverage,
    # calibration gap) treat a missing value as "cannot be judged".
    predictions: int = 0
    label_coverage: float | None = None
    calibration_gap: float | None = None


def point_from_stats(window_start: int, stats: WindowStats) -> WindowPoint:
    """The fields of a freshly computed window that the rules look at."""
    return WindowPoint(
        window_start=window_start,
        labeled=stats.labeled,
        weight_sum=stats.weight_sum,
        log_loss=stats.log_loss,
        log_loss_stderr=stats.log_loss_stderr,
        skill=stats.skill,
        baseline_log_loss=stats.baseline_log_loss,
        predictions=stats.predictions,
        label_coverage=stats.label_coverage,
        calibration_gap=stats.calibration_gap,
    )
