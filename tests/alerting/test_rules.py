"""Pure tests of the alert rules: no database, no clock, hand-built window series."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.alerting.rules import (
    LogLossAbove,
    Reference,
    RelativeToReference,
    SkillBelow,
    Trend,
    Verdict,
    WindowPoint,
    evaluate,
    holds,
    lookback,
    parse_rule,
    point_of,
    pooled_stderrs,
    reference_from,
    reference_range,
    transition,
    trend_test,
)
from app.metrics import binary_window_stats

HOUR = 3600
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
Z99 = 2.3263478740408408  # z_(0.99)


def pt(
    i: int,
    log_loss: float | None = 0.3,
    stderr: float | None = 0.01,
    *,
    labeled: int = 1000,
    weight_sum: float | None = None,
    skill: float | None = 0.1,
) -> WindowPoint:
    return WindowPoint(
        window_start=T0 + i * HOUR,
        labeled=labeled,
        weight_sum=float(labeled) if weight_sum is None else weight_sum,
        log_loss=log_loss,
        log_loss_stderr=stderr,
        skill=skill,
        baseline_log_loss=0.325,
    )


def series(losses: Sequence[float | None], stderr: float | None = 0.01) -> list[WindowPoint]:
    return [pt(i, loss, stderr) for i, loss in enumerate(losses)]


def relative(max_increase: float = 0.1, alpha: float = 0.01) -> RelativeToReference:
    return RelativeToReference(
        reference_start=datetime(2026, 1, 1, tzinfo=UTC),
        reference_end=datetime(2026, 1, 2, tzinfo=UTC),
        max_increase=max_increase,
        alpha=alpha,
    )


# --------------------------------------------------------------------------- simple rules


def test_log_loss_above() -> None:
    rule = LogLossAbove(threshold=0.3)
    assert holds(rule, [pt(0, 0.31)]) is True
    assert holds(rule, [pt(0, 0.3)]) is False  # strictly above
    assert holds(rule, [pt(0, 0.29)]) is False
    assert holds(rule, [pt(0, None)]) is None
    assert holds(rule, []) is None
    # Only the last point matters.
    assert holds(rule, [pt(0, 0.5), pt(1, 0.2)]) is False


def test_skill_below() -> None:
    rule = SkillBelow(threshold=0.0)
    assert holds(rule, [pt(0, skill=-0.01)]) is True
    assert holds(rule, [pt(0, skill=0.0)]) is False  # strictly below
    assert holds(rule, [pt(0, skill=0.2)]) is False
    assert holds(rule, [pt(0, skill=None)]) is None


# --------------------------------------------------------------------------- trend


def test_trend_holds_on_a_clear_rise() -> None:
    rule = Trend(windows=6, alpha=0.01)
    rising = series([0.30, 0.31, 0.32, 0.33, 0.34, 0.35], stderr=0.005)
    assert holds(rule, rising) is True


def test_trend_does_not_hold_on_flat_falling_or_weak_series() -> None:
    rule = Trend(windows=6, alpha=0.01)
    assert holds(rule, series([0.3] * 6)) is False
    assert holds(rule, series([0.35, 0.34, 0.33, 0.32, 0.31, 0.30], stderr=0.005)) is False
    # Rises by one stderr over six windows: z ≈ 0.24, far from significant.
    weak = series([0.300, 0.302, 0.304, 0.306, 0.308, 0.310], stderr=0.01)
    assert holds(rule, weak) is False


def test_trend_needs_k_points_and_stderrs() -> None:
    rule = Trend(windows=6)
    rising = [0.30, 0.31, 0.32, 0.33, 0.34, 0.35]
    assert holds(rule, series(rising[:5], stderr=0.005)) is None
    assert holds(rule, series(rising, stderr=None)) is None
    assert holds(rule, series(rising, stderr=0.0)) is None
    one_missing = series(rising, stderr=0.005)
    one_missing[2] = pt(2, 0.32, None)
    assert holds(rule, one_missing) is None
    # Points before the last K are ignored, even broken ones.
    longer = [pt(-1, 0.9, None), *series(rising, stderr=0.005)]
    assert holds(rule, longer) is True


def _numpy_reference(y: np.ndarray, s: np.ndarray) -> tuple[float, float, float]:
    """Slope, unscaled and dispersion-scaled slope variance from np.polyfit.

    polyfit weights multiply the residuals, so w = 1/s gives the chi² weights 1/s².
    cov="unscaled" is (XᵀWX)⁻¹; cov=True multiplies it by chi²/(K − 2).
    """
    x = np.arange(y.size, dtype=np.float64)
    coef, cov_unscaled = np.polyfit(x, y, 1, w=1.0 / s, cov="unscaled")
    _, cov_scaled = np.polyfit(x, y, 1, w=1.0 / s, cov=True)
    return float(coef[0]), float(cov_unscaled[0, 0]), float(cov_scaled[0, 0])


@pytest.mark.parametrize(
    ("y", "s"),
    [
        # Smooth rise: residual chi² below K − 2, so no inflation.
        ([0.300, 0.305, 0.309, 0.316, 0.320, 0.326], [0.006, 0.005, 0.007, 0.005, 0.006, 0.004]),
        # Scattered: chi² well above K − 2, inflation applies.
        ([0.30, 0.36, 0.29, 0.38, 0.31, 0.40], [0.004, 0.005, 0.004, 0.006, 0.005, 0.004]),
        # Unequal precision, longer window.
        ([0.27, 0.28, 0.26, 0.29, 0.30, 0.28, 0.31, 0.33], [0.02, 0.01, 0.03, 0.01] * 2),
    ],
)
def test_trend_z_matches_numpy_polyfit(y: list[float], s: list[float]) -> None:
    fit = trend_test(y, s)
    assert fit is not None
    slope, var_unscaled, var_scaled = _numpy_reference(np.array(y), np.array(s))
    assert fit.slope == pytest.approx(slope, rel=1e-9, abs=1e-12)
    expected_var = max(var_unscaled, var_scaled)  # inflate, never deflate
    assert fit.slope_stderr == pytest.approx(math.sqrt(expected_var), rel=1e-9)
    assert fit.dispersion == pytest.approx(var_scaled / var_unscaled, rel=1e-9)
    assert fit.z == pytest.approx(slope / math.sqrt(expected_var), rel=1e-9)


def test_pooled_stderrs() -> None:
    s = [0.02, 0.01, 0.03]
    n = [200, 800, 100]
    v = sum((ni - 1) * ni * si**2 for si, ni in zip(s, n, strict=True)) / sum(ni - 1 for ni in n)
    pooled = pooled_stderrs(s, n)
    assert pooled is not None
    assert pooled == pytest.approx([math.sqrt(v / ni) for ni in n], rel=1e-12)
    # Equal windows: the root mean square of the stderrs, shared by all.
    equal = pooled_stderrs([0.01, 0.02], [500, 500])
    assert equal == pytest.approx([math.sqrt((0.01**2 + 0.02**2) / 2)] * 2, rel=1e-12)
    assert pooled_stderrs([0.01, 0.0], [500, 500]) is None
    assert pooled_stderrs([0.01, math.inf], [500, 500]) is None
    assert pooled_stderrs([0.01, 0.01], [500, 1]) is None
    assert pooled_stderrs([], []) is None


def test_trend_holds_uses_pooled_stderrs_like_numpy() -> None:
    # Unequal window sizes: the fit must equal np.polyfit with w = 1/s̃ (pooled).
    losses = [0.270, 0.281, 0.276, 0.290, 0.302, 0.299]
    stderrs = [0.030, 0.012, 0.021, 0.018, 0.009, 0.015]
    labeled = [150, 1200, 400, 600, 2500, 900]
    points = [
        pt(i, loss, s, labeled=n)
        for i, (loss, s, n) in enumerate(zip(losses, stderrs, labeled, strict=True))
    ]
    pooled = np.array(pooled_stderrs(stderrs, labeled))
    slope, var_unscaled, var_scaled = _numpy_reference(np.array(losses), pooled)
    z = slope / math.sqrt(max(var_unscaled, var_scaled))
    for alpha in (0.001, 0.01, 0.05, 0.2, 0.45):
        expected = slope > 0 and z > NormalDist().inv_cdf(1 - alpha)
        assert holds(Trend(windows=6, alpha=alpha), points) is expected
    assert 1.6 < z < 3.1  # the alphas above straddle it: both outcomes are exercised


def test_trend_hand_computed_equal_stderrs() -> None:
    # x = 0..4, equal s: Sxx = Σ(x − 2)² / s² = 10 / s², b = OLS slope.
    y = [0.30, 0.31, 0.33, 0.32, 0.35]
    s = 0.01
    fit = trend_test(y, [s] * 5)
    assert fit is not None
    b = sum((i - 2) * (v - sum(y) / 5) for i, v in enumerate(y)) / 10
    assert fit.slope == pytest.approx(b)
    resid = [v - (sum(y) / 5 + b * (i - 2)) for i, v in enumerate(y)]
    phi = sum(r * r for r in resid) / s**2 / 3
    assert fit.dispersion == pytest.approx(phi)
    assert fit.z == pytest.approx(b / math.sqrt(max(phi, 1.0) * s**2 / 10))


def test_trend_overdispersion_correction_prevents_crying_wolf() -> None:
    # A mild drift buried in window-to-window scatter far larger than the per-window
    # stderrs claim: the naive known-variance z is "significant", the corrected is not.
    y = [0.30 + 0.003 * i + (0.03 if i % 2 else -0.03) for i in range(6)]
    s = [0.002] * 6
    fit = trend_test(y, s)
    assert fit is not None
    naive_z = fit.slope / math.sqrt(1.0 / sum((i - 2.5) ** 2 / 0.002**2 for i in range(6)))
    assert naive_z > Z99
    assert fit.dispersion > 1.0
    assert fit.z < Z99
    assert holds(Trend(windows=6), series(y, stderr=0.002)) is False


@settings(max_examples=200, deadline=None)
@given(
    level=st.floats(min_value=0.0, max_value=20.0, allow_nan=False),
    stderrs=st.lists(st.floats(min_value=1e-6, max_value=10.0), min_size=3, max_size=40),
    alpha=st.floats(min_value=1e-6, max_value=0.49),
)
def test_trend_never_fires_on_a_constant_series(
    level: float, stderrs: list[float], alpha: float
) -> None:
    rule = Trend(windows=len(stderrs), alpha=alpha)
    points = [pt(i, level, s) for i, s in enumerate(stderrs)]
    assert holds(rule, points) is False
    verdict = evaluate(rule, points, for_windows=1, min_labeled=1)
    assert verdict.firing is False


# --------------------------------------------------------------------------- relative


def test_relative_to_reference() -> None:
    rule = relative(max_increase=0.1, alpha=0.01)
    ref = Reference(log_loss=0.30, stderr=0.002, labeled=20_000)
    # Limit = 0.33; noise = hypot(0.005, 1.1 × 0.002) ≈ 0.00546.
    assert holds(rule, [pt(0, 0.36, 0.005)], reference=ref) is True  # z ≈ 5.5
    assert holds(rule, [pt(0, 0.34, 0.005)], reference=ref) is False  # z ≈ 1.83
    assert holds(rule, [pt(0, 0.32, 0.0001)], reference=ref) is False  # under the limit
    assert holds(rule, [pt(0, 0.36, 0.005)], reference=None) is None
    assert holds(rule, [pt(0, None)], reference=ref) is None
    # No stderr: cannot judge significance above the limit, but below it is clear.
    assert holds(rule, [pt(0, 0.36, None)], reference=ref) is None
    assert holds(rule, [pt(0, 0.30, None)], reference=ref) is False


def test_relative_z_boundary_is_exact() -> None:
    rule = relative(max_increase=0.05, alpha=0.01)
    ref = Reference(log_loss=0.2, stderr=0.0, labeled=10_000)
    limit = 1.05 * 0.2
    s = 0.01
    assert holds(rule, [pt(0, limit + (Z99 + 1e-6) * s, s)], reference=ref) is True
    assert holds(rule, [pt(0, limit + (Z99 - 1e-6) * s, s)], reference=ref) is False


def test_reference_from_pools_by_weight_sum() -> None:
    points = [
        pt(0, 0.30, 0.02, labeled=100, weight_sum=100.0),
        pt(1, 0.20, 0.01, labeled=300, weight_sum=300.0),
        pt(2, None, None, labeled=0, weight_sum=0.0),  # unusable: skipped
        pt(3, 0.90, None, labeled=1, weight_sum=1.0),  # no stderr: skipped
    ]
    ref = reference_from(points)
    assert ref is not None
    assert ref.log_loss == pytest.approx((100 * 0.30 + 300 * 0.20) / 400)
    assert ref.stderr == pytest.approx(math.sqrt(100**2 * 0.02**2 + 300**2 * 0.01**2) / 400)
    assert ref.labeled == 400
    assert reference_from([]) is None
    assert reference_from(points[2:]) is None
    # min_labeled keeps thin windows out of the reference.
    thin_only = reference_from(points, min_labeled=200)
    assert thin_only == Reference(log_loss=0.20, stderr=0.01, labeled=300)


@settings(max_examples=200, deadline=None)
@given(
    log_loss=st.floats(min_value=0.0, max_value=40.0),
    stderr=st.floats(min_value=0.0, max_value=10.0),
    labeled=st.integers(min_value=1, max_value=10**9),
    weight_sum=st.floats(min_value=1e-9, max_value=1e12),
)
def test_reference_from_one_point_is_that_point(
    log_loss: float, stderr: float, labeled: int, weight_sum: float
) -> None:
    point = pt(0, log_loss, stderr, labeled=labeled, weight_sum=weight_sum)
    assert reference_from([point]) == Reference(log_loss=log_loss, stderr=stderr, labeled=labeled)


def test_reference_range_rounds_up_to_whole_seconds() -> None:
    rule = RelativeToReference(
        reference_start=datetime(2026, 1, 1, 0, 0, 0, 500_000, tzinfo=UTC),
        reference_end=datetime(2026, 1, 2, 1, 0, tzinfo=timezone(timedelta(hours=1))),
    )
    assert reference_range(rule) == (T0 + 1, T0 + 24 * HOUR)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_for_windows_and_min_labeled() -> None:
    rule = LogLossAbove(threshold=0.5)
    bad, good = 0.6, 0.4
    points = [
        pt(0, good),
        pt(1, bad),
        pt(2, 0.1, labeled=10),  # too few labels: neither breaks nor resolves the run
        pt(3, bad),
    ]
    verdict = evaluate(rule, points, for_windows=2, min_labeled=100)
    assert verdict == Verdict(firing=True, last=points[3], holds_last=True)
    # The same thin window counted as evaluated would break the run.
    assert evaluate(rule, points, for_windows=2, min_labeled=1).firing is False
    assert evaluate(rule, points, for_windows=3, min_labeled=100).firing is False
    # Fewer evaluated points than for_windows: never firing.
    assert evaluate(rule, [pt(0, bad)], for_windows=2, min_labeled=1).firing is False


def test_evaluate_reports_newest_evaluated_point() -> None:
    rule = LogLossAbove(threshold=0.5)
    points = [pt(0, 0.6), pt(1, 0.4), pt(2, 0.9, labeled=5), pt(3, None, None)]
    verdict = evaluate(rule, points, for_windows=1, min_labeled=100)
    assert verdict == Verdict(firing=False, last=points[1], holds_last=False)


def test_evaluate_without_data() -> None:
    verdict = evaluate(
        LogLossAbove(threshold=0.5), [pt(0, 0.9, labeled=3)], for_windows=1, min_labeled=100
    )
    assert verdict == Verdict(firing=False, last=None, holds_last=None)
    assert evaluate(Trend(), [], for_windows=1, min_labeled=0).last is None


def test_evaluate_judges_each_point_on_its_own_history() -> None:
    rule = Trend(windows=3, alpha=0.01)
    rising = series([0.30, 0.32, 0.34, 0.36, 0.38], stderr=0.005)
    assert evaluate(rule, rising, for_windows=2, min_labeled=1).firing is True
    # With 3 points only the newest can be judged (the one before has < K points of
    # history), so two judgements in a row are not available yet.
    assert evaluate(rule, rising[:3], for_windows=2, min_labeled=1).firing is False
    assert evaluate(rule, rising[:3], for_windows=1, min_labeled=1).firing is True
    # A drop at the end: the point before still holds on its own history, the newest
    # does not.
    dropped = [*rising[:4], pt(4, 0.30, 0.005)]
    verdict = evaluate(rule, dropped, for_windows=2, min_labeled=1)
    assert (verdict.firing, verdict.holds_last) == (False, False)
    assert evaluate(rule, dropped[:4], for_windows=2, min_labeled=1).firing is True


def test_evaluate_relative_uses_reference() -> None:
    rule = relative(max_increase=0.0)
    ref = reference_from(series([0.30] * 24, stderr=0.01))
    bad = series([0.40, 0.41])
    assert evaluate(rule, bad, for_windows=2, min_labeled=1, reference=ref).firing is True
    verdict = evaluate(rule, bad, for_windows=2, min_labeled=1)
    assert verdict.firing is False
    assert verdict.holds_last is None


def test_evaluate_rejects_bad_for_windows() -> None:
    with pytest.raises(ValueError):
        evaluate(Trend(), [], for_windows=0, min_labeled=1)


@pytest.mark.parametrize(
    ("rule", "for_windows", "expected"),
    [
        (LogLossAbove(threshold=0.4), 1, 1),
        (SkillBelow(threshold=0.0), 3, 3),
        (Trend(windows=6), 1, 6),
        (Trend(windows=6), 2, 7),
        (relative(), 2, 2),
    ],
)
def test_lookback(rule: Any, for_windows: int, expected: int) -> None:
    assert lookback(rule, for_windows) == expected


@settings(max_examples=100, deadline=None)
@given(
    losses=st.lists(st.floats(min_value=0.1, max_value=0.5), min_size=1, max_size=20),
    for_windows=st.integers(min_value=1, max_value=4),
    k=st.integers(min_value=3, max_value=6),
)
def test_lookback_is_enough(losses: list[float], for_windows: int, k: int) -> None:
    rule = Trend(windows=k, alpha=0.2)
    points = series(losses, stderr=0.01)
    full = evaluate(rule, points, for_windows=for_windows, min_labeled=1)
    recent = points[-lookback(rule, for_windows) :]
    assert evaluate(rule, recent, for_windows=for_windows, min_labeled=1) == full


# --------------------------------------------------------------------------- transition


def _verdict(firing: bool, holds_last: bool | None) -> Verdict:
    return Verdict(firing=firing, last=pt(0), holds_last=holds_last)


@pytest.mark.parametrize(
    ("was_firing", "firing", "holds_last", "expected"),
    [
        (False, True, True, "fire"),
        (False, False, True, None),  # holds, but not yet for_windows in a row
        (False, False, False, None),
        (False, False, None, None),
        (True, True, True, None),  # one alert per episode
        (True, False, True, None),
        (True, False, False, "resolve"),
        (True, False, None, None),  # no data is not recovery
    ],
)
def test_transition(
    was_firing: bool,
    firing: bool,
    holds_last: bool | None,
    expected: Literal["fire", "resolve"] | None,
) -> None:
    assert transition(was_firing, _verdict(firing, holds_last)) == expected


def test_transition_no_data_verdict() -> None:
    empty = Verdict(firing=False, last=None, holds_last=None)
    assert transition(True, empty) is None
    assert transition(False, empty) is None


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize(
    "body",
    [
        {"type": "log_loss_above", "threshold": 0.4},
        {"type": "skill_below", "threshold": 0.0},
        {"type": "skill_below", "threshold": -3.5},
        {"type": "trend"},
        {"type": "trend", "windows": 200, "alpha": 0.001},
        {
            "type": "relative_to_reference",
            "reference_start": "2026-01-01T00:00:00Z",
            "reference_end": "2026-01-08T00:00:00+01:00",
            "max_increase": 0.0,
        },
    ],
)
def test_valid_rules_round_trip(body: dict[str, Any]) -> None:
    rule = parse_rule(body)
    assert rule.type == body["type"]
    assert parse_rule(rule.model_dump(mode="json")) == rule


def test_rule_defaults() -> None:
    trend = parse_rule({"type": "trend"})
    assert isinstance(trend, Trend)
    assert (trend.windows, trend.alpha) == (6, 0.01)
    rel = parse_rule(
        {
            "type": "relative_to_reference",
            "reference_start": "2026-01-01T00:00:00Z",
            "reference_end": "2026-01-02T00:00:00Z",
        }
    )
    assert isinstance(rel, RelativeToReference)
    assert (rel.max_increase, rel.alpha) == (0.1, 0.01)


REF = {"reference_start": "2026-01-01T00:00:00Z", "reference_end": "2026-01-02T00:00:00Z"}


@pytest.mark.parametrize(
    "body",
    [
        {"type": "nope", "threshold": 1.0},
        {"threshold": 1.0},
        {"type": "log_loss_above"},
        {"type": "log_loss_above", "threshold": 0.0},
        {"type": "log_loss_above", "threshold": -1.0},
        {"type": "log_loss_above", "threshold": "inf"},
        {"type": "log_loss_above", "threshold": 0.4, "treshold": 0.5},  # extra key
        {"type": "skill_below", "threshold": 1.5},
        {"type": "skill_below", "threshold": "-inf"},
        {"type": "skill_below", "threshold": float("nan")},
        {"type": "trend", "windows": 2},
        {"type": "trend", "windows": 201},
        {"type": "trend", "alpha": 0.0},
        {"type": "trend", "alpha": 0.5},
        {"type": "trend", "alpha": -0.01},
        {"type": "relative_to_reference", **REF, "alpha": 0.7},
        {"type": "relative_to_reference", **REF, "max_increase": -0.1},
        {"type": "relative_to_reference", "reference_start": "2026-01-01T00:00:00Z"},
        {
            "type": "relative_to_reference",
            "reference_start": "2026-01-02T00:00:00Z",
            "reference_end": "2026-01-02T00:00:00Z",
        },
        {
            "type": "relative_to_reference",
            "reference_start": "2026-01-02T00:00:00Z",
            "reference_end": "2026-01-01T00:00:00Z",
        },
        {  # naive datetimes: whose midnight?
            "type": "relative_to_reference",
            "reference_start": "2026-01-01T00:00:00",
            "reference_end": "2026-01-02T00:00:00",
        },
        {
            "type": "relative_to_reference",
            "reference_start": "2026-01-01T00:00:00Z",
            "reference_end": "2026-01-02T00:00:00",
        },
    ],
)
def test_invalid_rules_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_rule(body)


def test_naive_datetime_objects_rejected() -> None:
    with pytest.raises(ValidationError):
        RelativeToReference(
            reference_start=datetime(2026, 1, 1),  # naive on purpose
            reference_end=datetime(2026, 1, 2, tzinfo=UTC),
        )


def test_schema_has_descriptions() -> None:
    schema = RelativeToReference.model_json_schema()
    for name in ("reference_start", "reference_end", "max_increase", "alpha"):
        assert schema["properties"][name].get("description")


# --------------------------------------------------------------------------- glue


def test_point_of() -> None:
    scores = np.array([0.1, 0.8, 0.3, 0.6])
    labels = np.array([0.0, 1.0, np.nan, 1.0])
    stats = binary_window_stats(scores, labels, np.ones(4))
    point = point_of(T0, stats)
    assert point.window_start == T0
    assert point.labeled == 3
    assert point.log_loss == stats.log_loss
    assert point.log_loss_stderr == stats.log_loss_stderr
    assert point.skill == stats.skill
