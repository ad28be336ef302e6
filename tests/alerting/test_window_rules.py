"""Pure tests of calibration_gap_above and label_coverage_below: hand-built windows, no
database, no clock."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.alerting.rules import (
    CalibrationGapAbove,
    LabelCoverageBelow,
    LogLossAbove,
    WindowPoint,
    evaluable,
    evaluate,
    holds,
    lookback,
    parse_rule,
    point_of,
)
from app.metrics import binary_window_stats

HOUR = 3600
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def win(
    i: int,
    *,
    predictions: int = 1000,
    labeled: int | None = None,
    gap: float | None = 0.0,
    log_loss: float | None = 0.3,
) -> WindowPoint:
    """Window i; `labeled` defaults to every prediction (coverage 1)."""
    n = predictions if labeled is None else labeled
    return WindowPoint(
        window_start=T0 + i * HOUR,
        labeled=n,
        weight_sum=float(n),
        log_loss=log_loss if n else None,
        log_loss_stderr=0.01 if n > 1 else None,
        skill=0.1 if n else None,
        baseline_log_loss=0.325 if n else None,
        predictions=predictions,
        label_coverage=n / predictions if predictions else None,
        calibration_gap=gap if n else None,
    )


def coverage_series(coverages: list[float], predictions: int = 1000) -> list[WindowPoint]:
    return [
        win(i, predictions=predictions, labeled=round(c * predictions))
        for i, c in enumerate(coverages)
    ]


# --------------------------------------------------------------------------- calibration


def test_calibration_gap_above_holds_strictly_above() -> None:
    rule = CalibrationGapAbove(threshold=0.1)
    assert holds(rule, [win(0, gap=0.11)]) is True
    assert holds(rule, [win(0, gap=0.1)]) is False
    assert holds(rule, [win(0, gap=-0.2)]) is False  # better than it expects: fine
    assert holds(rule, [win(0, gap=None)]) is None
    assert holds(rule, [win(0, gap=0.5), win(1, gap=0.0)]) is False  # the last counts


def test_calibration_gap_windows_without_gap_or_labels_are_not_evaluated() -> None:
    rule = CalibrationGapAbove(threshold=0.1)
    thin = win(1, labeled=50, gap=0.9)
    no_gap = win(2, gap=None)
    points = [win(0, gap=0.3), thin, no_gap]
    assert evaluable(points, 200, rule) == [points[0]]
    verdict = evaluate(rule, points, for_windows=1, min_labeled=200)
    assert verdict.firing is True
    assert verdict.last == points[0]  # neither the thin nor the gap-less window
    assert evaluate(rule, [thin, no_gap], for_windows=1, min_labeled=200).last is None


def test_calibration_gap_needs_for_windows_in_a_row() -> None:
    rule = CalibrationGapAbove(threshold=0.1)
    points = [win(0, gap=0.3), win(1, gap=0.05), win(2, gap=0.3)]
    assert evaluate(rule, points, for_windows=2, min_labeled=1).firing is False
    assert evaluate(rule, [*points[2:], win(3, gap=0.2)], for_windows=2, min_labeled=1).firing


def test_point_from_stats_carries_the_new_fields() -> None:
    # Overconfident: scores 0.9 / 0.1, but the side is right only 70% of the time.
    n = 1000
    right = np.arange(n) % 10 < 7
    y = (np.arange(n) % 2).astype(np.float64)
    side = np.where(right, y, 1.0 - y)
    scores = np.where(side == 1.0, 0.9, 0.1)
    labels = np.where(np.arange(n) < 800, y, np.nan)  # 80% labeled
    stats = binary_window_stats(scores, labels, np.where(np.isnan(labels), np.nan, 1.0))
    p = point_of(T0, stats)
    assert p.predictions == n
    assert p.labeled == 800
    assert p.label_coverage == pytest.approx(0.8)
    assert p.calibration_gap == stats.calibration_gap
    assert p.calibration_gap is not None and p.calibration_gap > 0.3
    assert holds(CalibrationGapAbove(threshold=0.3), [p]) is True


# --------------------------------------------------------------------------- coverage


def test_label_coverage_below_holds_strictly_below() -> None:
    rule = LabelCoverageBelow(threshold=0.5, grace_windows=0)
    assert holds(rule, coverage_series([0.49])) is True
    assert holds(rule, coverage_series([0.5])) is False
    assert holds(rule, coverage_series([0.0])) is True
    no_coverage = WindowPoint(T0, 0, 0.0, None, None, None, None)  # hand-built, no field
    assert holds(rule, [no_coverage]) is None


def test_label_coverage_newest_grace_windows_are_never_judged() -> None:
    # Labels lag: the newest two windows have almost none, the older ones all of them.
    points = coverage_series([1.0, 1.0, 1.0, 0.1, 0.0])
    for grace, fires in ((0, True), (1, True), (2, False), (3, False)):
        rule = LabelCoverageBelow(threshold=0.5, grace_windows=grace)
        verdict = evaluate(rule, points, for_windows=1, min_labeled=100)
        assert verdict.firing is fires, grace
        assert verdict.last == points[len(points) - 1 - grace]
    # Every window still in grace: nothing to judge.
    rule = LabelCoverageBelow(threshold=0.5, grace_windows=5)
    assert evaluate(rule, points, for_windows=1, min_labeled=1).last is None
    assert evaluable(points, 1, rule) == []


def test_label_coverage_grace_counts_windows_with_predictions_whatever_their_size() -> None:
    # The newest window is thin (below min_labeled predictions) but it is still the
    # newest: it uses up the grace, so the one before it is judged.
    points = [*coverage_series([1.0, 0.2]), win(2, predictions=10, labeled=0)]
    rule = LabelCoverageBelow(threshold=0.5, grace_windows=1)
    verdict = evaluate(rule, points, for_windows=1, min_labeled=100)
    assert verdict.last == points[1]
    assert verdict.firing is True
    # A window without predictions is no window at all: it does not use the grace.
    empty = win(3, predictions=0, labeled=0)
    assert evaluable([*points, empty], 100, rule) == points[:2]
    # Order of the input does not matter.
    assert evaluable(list(reversed(points)), 100, rule) == points[:2]


def test_label_coverage_gate_counts_predictions_not_labels() -> None:
    rule = LabelCoverageBelow(threshold=0.5, grace_windows=0)
    # 1000 predictions, 5 labeled: far below any labeled gate, and exactly what the rule
    # is for.
    few_labels = [win(0, predictions=1000, labeled=5)]
    verdict = evaluate(rule, few_labels, for_windows=1, min_labeled=200)
    assert verdict.firing is True
    assert verdict.last == few_labels[0]
    # A window with too few predictions is not evaluated, labeled or not.
    small = [win(0, predictions=150, labeled=0)]
    assert evaluate(rule, small, for_windows=1, min_labeled=200).last is None
    # The log-loss rules keep their labeled gate on the same windows.
    loss_rule = LogLossAbove(threshold=0.1)
    assert evaluate(loss_rule, few_labels, for_windows=1, min_labeled=200).last is None
    assert evaluable(few_labels, 200) == []


def test_label_coverage_for_windows_in_a_row_after_grace() -> None:
    rule = LabelCoverageBelow(threshold=0.9, grace_windows=1)
    points = coverage_series([0.5, 0.95, 0.5, 0.5, 0.0])
    assert evaluate(rule, points, for_windows=2, min_labeled=1).firing is True
    assert evaluate(rule, points[:-1], for_windows=2, min_labeled=1).firing is False
    assert evaluate(rule, points, for_windows=3, min_labeled=1).firing is False


@pytest.mark.parametrize(
    ("rule", "for_windows", "expected"),
    [
        (CalibrationGapAbove(threshold=0.1), 2, 2),
        (LabelCoverageBelow(threshold=0.5), 1, 2),
        (LabelCoverageBelow(threshold=0.5, grace_windows=0), 3, 3),
        (LabelCoverageBelow(threshold=0.5, grace_windows=4), 2, 6),
    ],
)
def test_lookback(rule: Any, for_windows: int, expected: int) -> None:
    assert lookback(rule, for_windows) == expected


@settings(max_examples=100, deadline=None)
@given(
    coverages=st.lists(st.sampled_from([0.0, 0.3, 0.6, 1.0]), min_size=1, max_size=15),
    for_windows=st.integers(min_value=1, max_value=4),
    grace=st.integers(min_value=0, max_value=3),
)
def test_coverage_lookback_is_enough(coverages: list[float], for_windows: int, grace: int) -> None:
    rule = LabelCoverageBelow(threshold=0.5, grace_windows=grace)
    points = coverage_series(coverages)
    full = evaluate(rule, points, for_windows=for_windows, min_labeled=1)
    recent = points[-lookback(rule, for_windows) :]
    assert evaluate(rule, recent, for_windows=for_windows, min_labeled=1) == full


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "body",
    [
        {"type": "calibration_gap_above", "threshold": 0.05},
        {"type": "calibration_gap_above", "threshold": -0.1},
        {"type": "label_coverage_below", "threshold": 0.8},
        {"type": "label_coverage_below", "threshold": 1, "grace_windows": 0},
        {"type": "label_coverage_below", "threshold": 0.5, "grace_windows": 3.0},
    ],
)
def test_rule_bodies_parse_and_round_trip(body: dict[str, Any]) -> None:
    rule = parse_rule(body)
    assert parse_rule(rule.model_dump(mode="json")) == rule


def test_coverage_rule_defaults_to_one_grace_window() -> None:
    rule = parse_rule({"type": "label_coverage_below", "threshold": 0.8})
    assert isinstance(rule, LabelCoverageBelow)
    assert rule.grace_windows == 1


@pytest.mark.parametrize(
    "body",
    [
        {"type": "calibration_gap_above"},
        {"type": "calibration_gap_above", "threshold": "0.1"},
        {"type": "calibration_gap_above", "threshold": float("nan")},
        {"type": "calibration_gap_above", "threshold": 0.1, "grace_windows": 1},
        {"type": "label_coverage_below", "threshold": 0},
        {"type": "label_coverage_below", "threshold": 1.01},
        {"type": "label_coverage_below", "threshold": 0.5, "grace_windows": -1},
        {"type": "label_coverage_below", "threshold": 0.5, "grace_windows": 1.5},
        {"type": "label_coverage_below", "threshold": 0.5, "grace_windows": True},
        {"type": "label_coverage_below", "threshold": 0.5, "treshold": 0.5},
    ],
)
def test_bad_rule_bodies_are_refused(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_rule(body)
