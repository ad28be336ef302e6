"""Rules on what a window says about itself rather than on its log loss alone: the
calibration gap and the label coverage: their bodies. rules.py declares their specs
(which windows they judge, when they hold) with the others.

* ``calibration_gap_above``: log loss − expected log loss, i.e. how much worse the model
  does than its own scores promise. An overconfident model shows it before its raw log
  loss looks alarming next to other models.
* ``label_coverage_below``: the share of predictions that have their actual. Labels
  arrive late, so the newest windows are always thin; they are given ``grace_windows``
  windows to catch up before they are judged. Few labels is what this rule detects, so
  its size gate counts predictions, not labeled rows.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StrictInt

from app.alerting.rule_base import RuleBase


def _integral_float(value: object) -> object:
    # JSON has one number type: 1.0 is the integer 1 (as app.json_types.AsInt).
    return int(value) if isinstance(value, float) and value.is_integer() else value


GraceWindows = Annotated[StrictInt, Field(ge=0, le=1000), BeforeValidator(_integral_float)]


class CalibrationGapAbove(RuleBase):
    """The window's calibration gap (log loss − expected log loss) exceeds a threshold."""

    type: Literal["calibration_gap_above"] = "calibration_gap_above"
    threshold: float = Field(
        strict=True,
        allow_inf_nan=False,
        description=(
            "Holds when calibration_gap = log_loss − expected_log_loss (nats) is strictly "
            "above this: the model does worse than its own scores promise (typically "
            "overconfident). Windows without a calibration gap are not evaluated."
        ),
    )


class LabelCoverageBelow(RuleBase):
    """Too few of the window's predictions have received their actual."""

    type: Literal["label_coverage_below"] = "label_coverage_below"
    threshold: float = Field(
        gt=0.0,
        le=1.0,
        strict=True,
        allow_inf_nan=False,
        description="Holds when label_coverage = labeled / predictions is strictly below this.",
    )
    grace_windows: GraceWindows = Field(
        default=1,
        description=(
            "The newest this-many windows (with predictions) are never judged: their "
            "labels may still be on the way. For this rule min_labeled counts the "
            "window's predictions, not its labeled rows."
        ),
    )
