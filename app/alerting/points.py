"""The window values the alert rules look at, as a plain immutable value.

Whole-model windows (window_metrics) and slice windows (slice_metrics) become the same
:class:`WindowPoint`, so every rule is judged the same way on either.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


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
    # point_of always fill them, and the rules that read them (label coverage,
    # calibration gap) treat a missing value as "cannot be judged".
    predictions: int = 0
    label_coverage: float | None = None
    calibration_gap: float | None = None


def point_of(window_start: int, window: Any) -> WindowPoint:
    """The fields the rules look at, read by name from a window: a stored row
    (window_metrics / slice_metrics) or a freshly computed WindowStats."""
    return WindowPoint(
        window_start=window_start,
        **{name: getattr(window, name) for name in _WINDOW_FIELDS},
    )


# Every WindowPoint field but the start: the window record's fields of the same names.
_WINDOW_FIELDS = tuple(f.name for f in fields(WindowPoint) if f.name != "window_start")
