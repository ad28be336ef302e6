"""Rule ``cusum``: Page's one-sided CUSUM on the log loss's excess over a reference.

Pure functions, like rules.py (which puts :class:`Cusum` in the ``Rule`` union and
dispatches to :func:`cusum_holds`). Self-contained: the rule body, its threshold
calibration, its statistic, its lookback.

Statistic. Each evaluated window t contributes its standardised excess over the pooled
reference period (the same pooling as ``relative_to_reference``)::

    z_t = (L_t − L_ref) / sqrt(se_t² + se_ref²)

se_t is the window's own ``log_loss_stderr``, so a window with 200 labels moves the sum
far less than one with 100,000; adding the reference's stderr keeps z_t at unit variance
on a stationary stream. Then ``S_t = min(cap, max(0, S_{t−1} + z_t − k))`` from S = 0,
and the rule holds at t iff ``S_t > h``. k is the allowance per window (half the shift,
in stderrs, the chart is tuned to catch fastest); h the decision interval.

Calibration. ``false_alarm_rate`` is the budget of false alarms per evaluated window on
a stationary stream, i.e. 1 / ARL0, the in-control average run length of the chart
(an alert episode starts once per ARL0 windows on average). A false alarm is an alert
episode because that is what reaches people: one ``alert.firing`` per episode. The
share of windows on which the rule is *firing* is about twice the budget, since an
episode lasts until S falls back under h (~2 windows; see Episodes). Unless ``h`` is given it
is solved from k and the budget with Siegmund's approximation for normal increments,
``ARL0(h) = (exp(2k·b) − 2k·b − 1) / (2k²)`` with ``b = h + 1.166`` (Siegmund 1985,
"Sequential Analysis", eq. 2.56; the 1.166 is the expected overshoot correction).
tests/alerting/test_cusum.py checks it by simulation (alarm onsets per window on 400,000
iid N(0, 1) windows for several k and budgets), and bench/alerts.py measures the rule
as shipped on simulated windows with real per-window stderrs and a noisy reference.

Episodes. Once the alert resolves the chart restarts from 0 at the resolving window
(the evaluator passes that window as ``origin``); S is capped at ``cap = h + 2`` so
that, after a long episode, the chart comes back under h within about 2/k windows once
the loss is back at the reference (uncapped it would need S/k windows). The cap never
binds before the first crossing, so it does not change the false-alarm calibration.
Why 2 and not less: a tighter cap ends a false episode sooner but also ends real ones
while the loss is still up, and each such break is a resolve plus a new firing
notification. Measured on bench/alerts.py's streams (k = 0.75, 1,000 labels, a
sustained +20% ≈ 2.3 window stderrs): cap h + 2 resolves prematurely in 2.5% of
streams over 30 degraded windows, h + 0.5 in 29%, h + 0.1 in 54% (its "what-if" rows),
while the firing share of stationary windows only drops from 1.4% to 1.1% and 1.0%.

Memory. S is recomputed from the last ``MEMORY`` evaluated windows (after the origin)
on every evaluation rather than stored: a late window is then simply part of the
history in its place, and nothing needs repairing. Started from 0, the truncated chart
is never above the full one (S is monotone in its start), and on a stationary stream
the full chart returns to 0 within a few windows, so they agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal

from numpy.polynomial.hermite_e import hermegauss
from pydantic import Field, model_validator

from app.alerting.points import WindowPoint
from app.alerting.rule_base import RuleBase
from app.api.json_types import Timestamp

MEMORY = 48  # evaluated windows the statistic is recomputed over
CAP_ABOVE_H = 2.0
DEFAULT_K = 0.75
DEFAULT_FALSE_ALARM_RATE = 0.01
_OVERSHOOT = 1.166  # Siegmund's correction: E overshoot of a normal random walk, ρ = 0.583·2


class Cusum(RuleBase):
    """Sequential detection of a sustained rise of the log loss over a reference period."""

    type: Literal["cusum"] = "cusum"
    reference_start: Timestamp = Field(
        description="Start of the reference period (inclusive), with a UTC offset."
    )
    reference_end: Timestamp = Field(
        description=(
            "End of the reference period (exclusive), with a UTC offset. Windows whose "
            "start lies in [reference_start, reference_end) form the reference."
        )
    )
    k: float = Field(
        default=DEFAULT_K,
        gt=0.0,
        le=5.0,
        strict=True,
        allow_inf_nan=False,
        description=(
            "Allowance per window, in stderrs: half the sustained shift the chart should "
            "catch fastest (0.75: a 1.5-stderr shift; bench/alerts.py compares 0.5 and 1)."
        ),
    )
    h: float | None = Field(
        default=None,
        gt=0.0,
        le=100.0,
        strict=True,
        allow_inf_nan=False,
        description=(
            "Decision interval: the rule holds while the CUSUM statistic exceeds it. "
            "Omit it to derive h from k and false_alarm_rate."
        ),
    )
    false_alarm_rate: float | None = Field(
        default=None,
        ge=1e-6,
        le=0.2,
        strict=True,
        allow_inf_nan=False,
        description=(
            "False-alarm budget when h is omitted (default 0.01): expected alarms per "
            "evaluated window on a stationary stream (1 / in-control average run length)."
        ),
    )

    @model_validator(mode="after")
    def _consistent(self) -> Cusum:
        if self.reference_end <= self.reference_start:
            raise ValueError("reference_end must be after reference_start")
        if self.h is not None and self.false_alarm_rate is not None:
            raise ValueError("give h or false_alarm_rate, not both (h follows from the budget)")
        return self

    def threshold(self, rho: float = 0.0) -> float:
        """h as given, or solved from k and the false-alarm budget; ``rho``: the
        reference's share of the excess variance (see :func:`false_alarm_rate`)."""
        if self.h is not None:
            return self.h
        rate = self.false_alarm_rate
        return decision_interval(self.k, DEFAULT_FALSE_ALARM_RATE if rate is None else rate, rho)


def siegmund_arl(k: float, h: float, drift: float = 0.0, sd: float = 1.0) -> float:
    """Average run length of a one-sided CUSUM (allowance k, interval h) whose
    increments are N(drift, sd²): Siegmund's approximation
    (exp(−2Δb) + 2Δb − 1) / (2Δ²) with Δ = (drift − k)/sd, b = h/sd + 1.166."""
    delta = (drift - k) / sd
    b = h / sd + _OVERSHOOT
    if abs(delta) < 1e-9:
        return b * b
    x = -2.0 * delta * b
    return (math.expm1(x) - x) / (2.0 * delta * delta)


def siegmund_arl0(k: float, h: float) -> float:
    """In-control average run length of a one-sided CUSUM with N(0, 1) increments."""
    return siegmund_arl(k, h)


# Gauss–Hermite nodes (probabilists') for the average over the reference's error.
_NODES, _WEIGHTS = hermegauss(40)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


def false_alarm_rate(k: float, h: float, rho: float = 0.0) -> float:
    """Expected alarms per window on a stationary stream whose z_t share the reference's
    error: z_t = a_t + c with a_t ~ N(0, 1 − ρ) iid and c ~ N(0, ρ) common to the stream,
    ρ = se_ref² / (se_t² + se_ref²). Given c the alarms form a renewal process at rate
    1 / ARL(drift c, sd sqrt(1 − ρ)); averaged over c. A short reference makes some
    streams' reference too low, and their charts alarm far more often: ignoring it let
    the rule raise 1.4% instead of 1% at 10,000 labels/window in bench/alerts.py."""
    if rho <= 0.0:
        return 1.0 / siegmund_arl(k, h)
    sd = math.sqrt(1.0 - rho)
    spread = math.sqrt(rho)
    return math.fsum(
        float(w) / siegmund_arl(k, h, drift=float(x) * spread, sd=sd)
        for x, w in zip(_NODES, _WEIGHTS, strict=True)
    )


@lru_cache(maxsize=1024)
def decision_interval(k: float, budget: float, rho: float = 0.0) -> float:
    """The h whose false-alarm rate (see :func:`false_alarm_rate`) is ``budget``
    (bisection: the rate falls as h grows)."""
    lo, hi = 0.0, 1.0
    while false_alarm_rate(k, hi, rho) > budget:
        hi *= 2.0
        if hi > 1e4:
            raise ValueError("false-alarm budget too small for this k")
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if false_alarm_rate(k, mid, rho) > budget:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-6:
            break
    return hi


def reference_share(ref_stderr: float, stderrs: Sequence[float]) -> float:
    """ρ: the share of a window's excess variance that is the reference's own error,
    from the mean squared stderr of the windows judged (rounded, so thresholds cache)."""
    mean_sq = math.fsum(s * s for s in stderrs) / len(stderrs) if stderrs else 0.0
    total = ref_stderr * ref_stderr + mean_sq
    if not total > 0.0:
        return 0.0
    return round(min(0.5, ref_stderr * ref_stderr / total), 3)


def standardised(point: WindowPoint, ref_log_loss: float, ref_stderr: float) -> float | None:
    """z of one window against the reference; None when it cannot be judged."""
    if point.log_loss is None or point.log_loss_stderr is None:
        return None
    noise = math.hypot(point.log_loss_stderr, ref_stderr)
    if not (math.isfinite(noise) and noise > 0.0 and math.isfinite(point.log_loss)):
        return None
    return (point.log_loss - ref_log_loss) / noise


def statistic(zs: Sequence[float], *, k: float, cap: float) -> float:
    """S after the increments ``zs``, started at 0."""
    s = 0.0
    for z in zs:
        s = min(cap, max(0.0, s + z - k))
    return s


def cusum_holds(
    rule: Cusum,
    history: Sequence[WindowPoint],
    *,
    ref_log_loss: float | None,
    ref_stderr: float | None,
    origin: int | None = None,
) -> bool | None:
    """S_t > h at the last point of ``history`` (evaluated windows, oldest first).

    Windows at or before ``origin`` (the window that resolved the last episode) do not
    count: the chart restarted there. None without a reference, or when a window of the
    memory has no usable log loss / stderr (an alert needs positive evidence).
    """
    if ref_log_loss is None or ref_stderr is None or not history:
        return None
    recent = [p for p in history if origin is None or p.window_start > origin][-MEMORY:]
    if not recent or recent[-1] is not history[-1]:
        return None  # the judged window itself is at or before the restart
    zs: list[float] = []
    stderrs: list[float] = []
    for p in recent:
        z = standardised(p, ref_log_loss, ref_stderr)
        if z is None or p.log_loss_stderr is None:
            return None
        zs.append(z)
        stderrs.append(p.log_loss_stderr)
    h = rule.threshold(reference_share(ref_stderr, stderrs))
    return statistic(zs, k=rule.k, cap=h + CAP_ABOVE_H) > h


def cusum_lookback(for_windows: int) -> int:
    """Evaluated windows evaluate() needs: the memory behind each judged point."""
    return for_windows + MEMORY - 1
