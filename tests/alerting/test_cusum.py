"""Pure tests of the cusum rule: calibration of h by simulation, the statistic, the
restart after a resolved episode, validation. No database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from app.alerting import cusum
from app.alerting.rules import (
    Cusum,
    Reference,
    WindowPoint,
    evaluate,
    holds,
    lookback,
    parse_rule,
    transition,
)

HOUR = 3600
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
REF_START = datetime(2025, 12, 1, tzinfo=UTC)
REF_END = REF_START + timedelta(days=1)
REF = Reference(log_loss=0.3, stderr=0.0, labeled=10_000)


def rule(**extra: object) -> Cusum:
    # k = 0.5 unless given: the paths below are worked out for it.
    body: dict[str, object] = {"k": 0.5, **extra}
    return Cusum(reference_start=REF_START, reference_end=REF_END, **body)  # type: ignore[arg-type]


def pt(i: int, z: float, stderr: float = 0.01) -> WindowPoint:
    """A window whose standardised excess over REF (stderr 0) is exactly z."""
    return WindowPoint(
        window_start=T0 + i * HOUR,
        labeled=1000,
        weight_sum=1000.0,
        log_loss=REF.log_loss + z * stderr,
        log_loss_stderr=stderr,
        skill=0.1,
        baseline_log_loss=0.325,
    )


def onsets_per_window(zs: np.ndarray, k: float, h: float) -> float:
    """Alarm onsets per window of the chart restarted at 0 after each alarm (ARL0⁻¹)."""
    s = 0.0
    alarms = 0
    for z in zs.tolist():
        s = max(0.0, s + z - k)
        if s > h:
            alarms += 1
            s = 0.0
    return alarms / len(zs)


@pytest.mark.parametrize(
    ("k", "budget"), [(0.5, 0.01), (0.25, 0.01), (1.0, 0.01), (0.5, 0.002), (0.5, 0.05)]
)
def test_h_from_the_budget_gives_that_false_alarm_rate(k: float, budget: float) -> None:
    # The calibration check: Siegmund's ARL0 approximation, solved for h, against the
    # alarm rate measured on 400,000 iid N(0, 1) windows (fixed seed). Poisson noise on
    # ~4,000 alarms is ~1.6%; the approximation itself is within a few percent.
    h = cusum.decision_interval(k, budget)
    zs = np.random.default_rng([20260101, int(k * 100), int(budget * 1e4)]).standard_normal(400_000)
    measured = onsets_per_window(zs, k, h)
    assert measured == pytest.approx(budget, rel=0.12), (k, budget, h, measured)


def test_h_accounts_for_the_reference_error_shared_by_a_stream() -> None:
    # 2,000 streams of 200 windows, each with its own reference error c ~ N(0, ρ)
    # shared by all its windows: the h solved for ρ keeps the budget on average, the
    # h that ignores it does not.
    k, budget, rho = 0.5, 0.01, 0.04
    rng = np.random.default_rng(20260102)
    shifts = rng.normal(0.0, np.sqrt(rho), 2000)
    zs = rng.normal(0.0, np.sqrt(1 - rho), (2000, 200)) + shifts[:, None]
    h_rho = cusum.decision_interval(k, budget, rho)
    h_naive = cusum.decision_interval(k, budget)
    assert h_rho > h_naive
    rate = float(np.mean([onsets_per_window(row, k, h_rho) for row in zs]))
    naive = float(np.mean([onsets_per_window(row, k, h_naive) for row in zs]))
    assert rate == pytest.approx(budget, rel=0.2), rate
    assert naive > 1.2 * budget, naive


def test_decision_interval_matches_siegmund_and_grows_with_a_smaller_budget() -> None:
    h = cusum.decision_interval(0.5, 0.01)
    assert cusum.siegmund_arl0(0.5, h) == pytest.approx(100.0, rel=1e-6)
    assert cusum.decision_interval(0.5, 0.001) > h > cusum.decision_interval(0.5, 0.1)
    assert rule().threshold() == h
    assert rule(h=7.5).threshold() == 7.5
    assert Cusum(reference_start=REF_START, reference_end=REF_END).k == 0.75  # the default


def test_statistic_is_the_capped_reflected_sum() -> None:
    assert cusum.statistic([1.5, 1.5, -5.0, 2.0], k=0.5, cap=100.0) == 1.5
    assert cusum.statistic([10.0, 10.0], k=0.5, cap=6.0) == 6.0
    assert cusum.statistic([], k=0.5, cap=6.0) == 0.0


def test_holds_after_a_sustained_shift_not_on_a_single_blip() -> None:
    r = rule(h=4.0)
    blip = [pt(i, 0.0) for i in range(10)] + [pt(10, 3.0)]
    assert holds(r, blip, reference=REF) is False  # S = 2.5
    shifted = [pt(i, 0.0) for i in range(10)] + [pt(10 + j, 2.0) for j in range(3)]
    assert [holds(r, shifted[: 11 + j], reference=REF) for j in range(3)] == [
        False,  # 1.5
        False,  # 3.0
        True,  # 4.5
    ]


def test_no_reference_or_a_broken_window_cannot_be_judged() -> None:
    r = rule(h=4.0)
    points = [pt(i, 5.0) for i in range(3)]
    assert holds(r, points, reference=None) is None
    broken = WindowPoint(
        window_start=T0 + 3 * HOUR,
        labeled=1000,
        weight_sum=1000.0,
        log_loss=0.9,
        log_loss_stderr=None,
        skill=0.0,
        baseline_log_loss=0.325,
    )
    assert holds(r, [*points, broken], reference=REF) is None


def test_restart_after_resolve_and_recovery_after_the_cap() -> None:
    r = rule(h=4.0)
    # A long episode: S runs into the cap h + 2 = 6.
    points = [pt(i, 3.0) for i in range(20)]
    # Back at the reference: S falls by k = 0.5 per window from the cap.
    points += [pt(20 + j, 0.0) for j in range(6)]
    states = [holds(r, points[: i + 1], reference=REF) for i in range(len(points))]
    assert states[19] is True
    # 6 → 5.5, 5.0, 4.5 still above h; 4.0 is not: recovered after 4 windows.
    assert states[20:24] == [True, True, True, False]
    resolved_at = points[23].window_start
    # Restarted at the resolving window: the next blip starts from 0, not from 4.0.
    again = [*points[:24], pt(24, 1.5)]
    assert holds(r, again, reference=REF) is True  # without the restart: 4 + 1 > 4
    assert holds(r, again, reference=REF, origin=resolved_at) is False  # S = 1.0
    # The judged window itself at or before the restart cannot be judged.
    assert holds(r, points[:24], reference=REF, origin=resolved_at) is None


def test_evaluate_and_transition_fire_then_resolve_then_restart() -> None:
    r = rule(h=2.0)
    need = lookback(r, 1)
    assert need == cusum.MEMORY
    points = [pt(i, 0.0) for i in range(5)] + [pt(5 + j, 2.0) for j in range(3)]
    points += [pt(8 + j, -2.0) for j in range(3)]
    firing = False
    origin: int | None = None
    log = []
    for t in range(len(points)):
        verdict = evaluate(
            r, points[: t + 1][-need:], for_windows=1, min_labeled=1, reference=REF, origin=origin
        )
        action = transition(firing, verdict)
        if action == "fire":
            firing = True
        elif action == "resolve":
            firing, origin = False, points[t].window_start
        log.append(action)
    # S: 1.5, 3.0 (fires), 4.5, then 2.0 (not > 2: resolves), restarted.
    assert log == [None] * 6 + ["fire", None, "resolve", None, None]


def test_memory_bounds_what_the_statistic_looks_at() -> None:
    r = rule(h=4.0)
    old_shift = [pt(i, 10.0) for i in range(5)]
    quiet = [pt(5 + i, 0.5) for i in range(cusum.MEMORY)]  # z = k: S stays put
    # The shift is older than the memory: forgotten, so S = 0.
    assert holds(r, old_shift + quiet, reference=REF) is False
    assert holds(r, old_shift + quiet[:10], reference=REF) is True


def test_validation() -> None:
    assert isinstance(
        parse_rule(
            {
                "type": "cusum",
                "reference_start": "2025-12-01T00:00:00Z",
                "reference_end": "2025-12-02T00:00:00Z",
                "false_alarm_rate": 0.005,
            }
        ),
        Cusum,
    )
    for bad in (
        {"h": 5.0, "false_alarm_rate": 0.01},
        {"k": 0.0},
        {"h": -1.0},
        {"false_alarm_rate": 0.5},
        {"reference_end": REF_START},
        {"kk": 1},
    ):
        with pytest.raises(ValidationError):
            Cusum.model_validate(
                {"reference_start": REF_START, "reference_end": REF_END, "type": "cusum", **bad}
            )
