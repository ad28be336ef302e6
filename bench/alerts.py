"""Alert rules on simulated streams: false alarms when nothing changes, delay when it does.

    .venv/bin/python bench/alerts.py            # full run (2–3.5 min, depending on load)
    .venv/bin/python bench/alerts.py --quick    # smoke run, a few seconds

No database, no server: every window is built from simulated rows and measured with the
service's own ``app.metrics.binary_window_stats`` (so each window carries its real log
loss and stderr), then judged with ``app.alerting.rules.evaluate`` on exactly the
``lookback`` slice the evaluator would load.

Stream model (CTR-like). Row i has a latent logit z_i = μ + σ·ε_i (σ = 1.2, μ solved so
the base rate is 0.1); the label is Bernoulli(sigmoid(z_i)). A healthy model scores
sigmoid(z_i): calibrated and as informative as the data allows (log loss ≈ 0.27 against
0.325 for the base-rate baseline). A degraded model scores sigmoid(z_i + τ·η_i), η_i
standard normal: noisier, overconfident, less informative. τ is calibrated by
simulation (a fixed 1,000,000-row sample, root finding to 1e-6) so the expected log loss
is 20% higher; the increase actually achieved on the simulated windows is printed.

Rules: trend (K=6, alpha=0.01); relative_to_reference with the stream's first 24 windows
as reference, alpha=0.01, max_increase 0.05 and 0; log_loss_above with threshold 1.1 ×
the healthy model's expected log loss (the same stationary level for every window size).

cusum (k = 0.75 default, and 0.5, 1 for the trade-off) with the same 24-window
reference; h solved from the default false-alarm budget, 1 alarm per 100 evaluated
windows (app/alerting/cusum.py says how), and the default k with a 2% budget to show
what a faster gradual detection costs. Each stream runs the evaluator's state machine
window by window (rules.transition), so a cusum restarts after each resolved episode as
in the service.

Cap what-ifs: the default cusum with its cap at h + 0.5 and h + 0.1 instead of h + 2
(``with_cap``), to show what a shorter false episode costs on a real rise.

Yardstick (not a rule): a filter matched to the gradual scenario's linear rise (see
``yardstick_series``), thresholded at ~1% false-alarm episodes. It knows what the rules
do not (the shape of the change), so its gradual delay shows what is reachable at that
false-alarm level on these streams.

What counts as a false alarm. An alerting service's false alarm is a notification sent
while nothing changed: lossmon sends one ``alert.firing`` per episode (and one
``alert.resolved`` when it ends), so the measure is alert episodes started per evaluated
window (1/ARL0 for a sequential rule), and that is what cusum's budget bounds. The share
of evaluated windows on which the rule is firing is printed too: for the single-window
rules the two nearly coincide (their episodes last ~1 window); a cusum episode lasts
~2 windows (S must fall back under h), so its firing share is ~2x its episode rate.

Measurements:
* false alarms: stationary streams (τ = 0); each has a 24-window reference period, then
  every later window is evaluated. Episodes/window = alert episodes started per
  evaluated window (for_windows 1), the false alarms as defined above; rate = share of
  evaluated windows on which the rule fires (for_windows 1 and 2). Target <= 1%. The
  95% upper bounds are Wilson intervals over windows (episodes from one stream are
  nearly independent; firing windows are not, so that bound is indicative).
* detection delay: 24 reference + 6 healthy windows, then degradation from window t0
  (abrupt: +20% at once; gradual: linear ramp +2%, +4%, ... +20% over 10 windows).
  Delay = number of degraded windows seen up to and including the first firing one
  (1 = fired on the first degraded window); undetected after ``HORIZON`` windows counts
  as not detected. Targets: abrupt >= 90% within 3 windows; gradual median <= 5.
  "resolved while degraded" = share of streams whose alert (for_windows 1) resolved at
  least once after firing although the degradation persists (flapping: a resolve and
  a new firing notification for one incident).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.alerting import cusum
from app.alerting.cusum import standardised
from app.alerting.rules import (
    Cusum,
    LogLossAbove,
    Reference,
    RelativeToReference,
    Rule,
    Trend,
    WindowPoint,
    evaluate,
    lookback,
    point_of,
    reference_from,
    reference_range,
    transition,
)
from app.metrics import binary_window_stats

FloatArray = npt.NDArray[np.float64]

NAME = "alerts"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
SEED = 20260101
WINDOW_SECONDS = 3600
BASE = datetime(2026, 1, 1, tzinfo=UTC)
BASE_EPOCH = int(BASE.timestamp())

BASE_RATE = 0.1
SIGMA = 1.2  # latent logit spread: sets how much skill the healthy model has
DEGRADATION = 0.20  # target relative increase of the expected log loss
DEGRADATION_TOLERANCE = 0.02
RAMP_WINDOWS = 10
CALIBRATION_ROWS = 1_000_000

REFERENCE_WINDOWS = 24
HEALTHY_BEFORE = 6  # healthy windows after the reference, before the degradation
HORIZON = 30  # degraded windows simulated per detection stream
MIN_LABELED = 100
FOR_WINDOWS = (1, 2)

# One stationary mean, many labels-per-window sizes: (labels, streams, evaluated windows
# per stream). Streams are independent (own reference); windows within a stream share it.
# 10,000 labels: 240 streams (12,000 windows, ~100 cusum episodes), enough for a
# usable bound at a few seconds' cost per 60 streams.
FULL_FALSE_ALARM = ((200, 300, 100), (1_000, 300, 100), (10_000, 240, 50))
QUICK_FALSE_ALARM = ((200, 8, 30), (1_000, 8, 30), (10_000, 2, 15))
FULL_DETECTION_STREAMS = 200
QUICK_DETECTION_STREAMS = 8
DETECTION_LABELS = 1_000


def sigmoid(x: FloatArray) -> FloatArray:
    return np.asarray(1.0 / (1.0 + np.exp(-x)), dtype=np.float64)


def solve(f: Callable[[float], float], lo: float, hi: float, ftol: float = 1e-6) -> float:
    """x in [lo, hi] with |f(x)| < ftol, for a continuous increasing f (Illinois regula
    falsi).

    Converges superlinearly on these smooth simulated expectations: a handful of
    evaluations instead of the ~25 a bisection would need.
    """
    f_lo, f_hi = f(lo), f(hi)
    if not f_lo <= 0.0 <= f_hi:
        raise ValueError("root not bracketed")
    side = 0
    for _ in range(100):
        x = hi - f_hi * (hi - lo) / (f_hi - f_lo) if f_hi != f_lo else 0.5 * (lo + hi)
        fx = f(x)
        if abs(fx) < ftol:
            return x
        if fx < 0.0:
            lo, f_lo = x, fx
            if side == -1:
                f_hi /= 2.0  # Illinois: stop the stale end from pinning the estimate
            side = -1
        else:
            hi, f_hi = x, fx
            if side == 1:
                f_lo /= 2.0
            side = 1
    raise ValueError("no convergence")


@dataclass(frozen=True)
class Calibration:
    mu: float
    stationary_log_loss: float  # expected per-row (= per-window) log loss, healthy model
    baseline_log_loss: float  # entropy of the base rate
    tau_full: float  # noise giving +DEGRADATION
    tau_ramp: tuple[float, ...]  # noise for +DEGRADATION·k/RAMP_WINDOWS, k = 1..10


def calibrate() -> Calibration:
    """Solve μ and the degradation noise τ on one fixed simulated sample.

    Common random numbers (the same ε, η for every candidate) make the simulated
    expectation a smooth, monotone function of the parameter, so root finding converges.
    The expected loss given the true probability p is Rao-Blackwellised
    (p·loss(q, 1) + (1 − p)·loss(q, 0)) rather than sampled from labels, which removes
    the label noise from the calibration.
    """
    rng = np.random.default_rng([SEED, 0])
    eps = rng.standard_normal(CALIBRATION_ROWS)
    eta = rng.standard_normal(CALIBRATION_ROWS)

    mu = solve(lambda m: float(np.mean(sigmoid(m + SIGMA * eps))) - BASE_RATE, -10.0, 2.0)
    z = mu + SIGMA * eps
    p = sigmoid(z)

    def expected_loss(tau: float) -> float:
        logit = z + tau * eta
        # −ln q = ln(1 + e^−l) and −ln(1 − q) = ln(1 + e^l): the per-row loss taken
        # straight from the logit. Equal to the service's clipped loss here (clipping at
        # 1e-15 only bites for |logit| > 34, far outside these draws) and much faster,
        # which matters with ~80 evaluations on a million rows.
        return float(np.mean(p * np.logaddexp(0.0, -logit) + (1.0 - p) * np.logaddexp(0.0, logit)))

    healthy = expected_loss(0.0)
    baseline = -(BASE_RATE * math.log(BASE_RATE) + (1 - BASE_RATE) * math.log1p(-BASE_RATE))

    def tau_for(increase: float) -> float:
        return solve(lambda t: expected_loss(t) / healthy - 1.0 - increase, 0.0, 5.0)

    ramp = tuple(tau_for(DEGRADATION * k / RAMP_WINDOWS) for k in range(1, RAMP_WINDOWS + 1))
    return Calibration(
        mu=mu,
        stationary_log_loss=healthy,
        baseline_log_loss=baseline,
        tau_full=ramp[-1],
        tau_ramp=ramp,
    )


def simulate_window(
    rng: np.random.Generator, cal: Calibration, labels: int, tau: float, index: int
) -> WindowPoint:
    z = cal.mu + SIGMA * rng.standard_normal(labels)
    y = (rng.random(labels) < sigmoid(z)).astype(np.float64)
    logit = z + tau * rng.standard_normal(labels) if tau > 0.0 else z
    stats = binary_window_stats(sigmoid(logit), y, np.ones(labels))
    return point_of(BASE_EPOCH + index * WINDOW_SECONDS, stats)


def simulate_stream(
    rng: np.random.Generator, cal: Calibration, labels: int, taus: Sequence[float]
) -> list[WindowPoint]:
    return [simulate_window(rng, cal, labels, tau, i) for i, tau in enumerate(taus)]


STATIC = "log_loss_above"
DEFAULT_CUSUM = "cusum k=0.75 (default)"


def make_rules(cal: Calibration) -> dict[str, Rule]:
    ref_end = BASE + timedelta(seconds=REFERENCE_WINDOWS * WINDOW_SECONDS)

    def relative(max_increase: float) -> RelativeToReference:
        return RelativeToReference(
            reference_start=BASE, reference_end=ref_end, max_increase=max_increase, alpha=0.01
        )

    return {
        "trend": Trend(windows=6, alpha=0.01),
        "relative max_increase=0.05": relative(0.05),
        # The same test with no tolerance: "significantly worse than the reference at
        # all", the most sensitive setting of the rule.
        "relative max_increase=0": relative(0.0),
        # Tuned to the same stationary level: 10% above the healthy model's expected
        # log loss (from the calibration sample), independent of window size.
        STATIC: LogLossAbove(threshold=round(1.1 * cal.stationary_log_loss, 4)),
        # Sequential: h solved from k and the false-alarm budget (default: 1 alarm per
        # 100 windows). k = 0.75 is the default; 0.5 and 1 show the trade-off.
        DEFAULT_CUSUM: Cusum(reference_start=BASE, reference_end=ref_end),
        "cusum k=0.5": Cusum(reference_start=BASE, reference_end=ref_end, k=0.5),
        "cusum k=1": Cusum(reference_start=BASE, reference_end=ref_end, k=1.0),
        # The price of a faster gradual detection: the default k with twice the budget.
        "cusum k=0.75 budget 2%": Cusum(
            reference_start=BASE, reference_end=ref_end, false_alarm_rate=0.02
        ),
    }


def stream_reference(rule: Rule, points: Sequence[WindowPoint]) -> Reference | None:
    if not isinstance(rule, RelativeToReference | Cusum):
        return None
    first, end = reference_range(rule)
    return reference_from(
        [p for p in points if first <= p.window_start < end], min_labeled=MIN_LABELED
    )


def alert_series(
    rule: Rule, points: Sequence[WindowPoint], start: int, for_windows: int
) -> tuple[list[bool], int, int]:
    """(verdict.firing at every window from ``start`` on, alert episodes started,
    episodes resolved), as the evaluator would see it: only the windows up to the
    current one, only the ``lookback`` most recent.

    Runs the evaluator's state machine (rules.transition) window by window, so a cusum
    restarts after each resolved episode exactly as in the service (``origin``)."""
    reference = stream_reference(rule, points)
    need = lookback(rule, for_windows)
    out = []
    firing = False
    onsets = resolves = 0
    origin: int | None = None
    for t in range(start, len(points)):
        recent = points[max(0, t + 1 - need) : t + 1]
        verdict = evaluate(
            rule,
            recent,
            for_windows=for_windows,
            min_labeled=MIN_LABELED,
            reference=reference,
            origin=origin,
        )
        action = transition(firing, verdict)
        if action == "fire":
            firing, onsets = True, onsets + 1
        elif action == "resolve":
            firing, origin, resolves = False, points[t].window_start, resolves + 1
        out.append(verdict.firing)
    return out, onsets, resolves


# A detector run over one stream from ``start``: (firing per window, episodes, resolves).
Series = Callable[[Sequence[WindowPoint], int, int], tuple[list[bool], int, int]]

YARDSTICK = "yardstick: ramp-matched filter"
RAMP_FILTER = (1.0, 2.0, 3.0)  # weights on the last 3 windows' z, oldest first
RAMP_FILTER_THRESHOLD = 2.2


def yardstick_series(
    points: Sequence[WindowPoint], start: int, for_windows: int
) -> tuple[list[bool], int, int]:
    """Not a rule: a detector told the gradual scenario's shape, to bound what any rule
    could do on it. M_t = Σ w_j z_(t−2+j) / |w| with w = (1, 2, 3), the likelihood-ratio
    statistic for a linear rise starting 3 windows back (z as cusum standardises it,
    against the same reference); it holds while M_t > 2.2, the level at which its
    false-alarm episodes come to ~1% per window on these streams (set by simulation,
    i.e. tuned to the bench, in its favour), and fires after ``for_windows`` in a row."""
    first, end = BASE_EPOCH, BASE_EPOCH + REFERENCE_WINDOWS * WINDOW_SECONDS
    reference = reference_from(
        [p for p in points if first <= p.window_start < end], min_labeled=MIN_LABELED
    )
    assert reference is not None
    zs = [standardised(p, reference.log_loss, reference.stderr) or 0.0 for p in points]
    norm = math.sqrt(math.fsum(w * w for w in RAMP_FILTER))
    m = len(RAMP_FILTER)
    holds_at = [
        t >= m - 1
        and math.fsum(w * z for w, z in zip(RAMP_FILTER, zs[t + 1 - m : t + 1], strict=True)) / norm
        > RAMP_FILTER_THRESHOLD
        for t in range(len(points))
    ]
    out: list[bool] = []
    onsets = resolves = 0
    firing = False
    for t in range(start, len(points)):
        now = all(holds_at[max(0, t + 1 - for_windows) : t + 1])
        onsets += now and not firing
        resolves += firing and not now
        firing = now
        out.append(now)
    return out, onsets, resolves


CAP_VARIANTS = (0.5, 0.1)  # cusum's cap above h, what-ifs against the shipped one


def with_cap(rule: Rule, cap_above_h: float) -> Series:
    """The rule with cusum's cap at h + ``cap_above_h`` instead of the shipped constant:
    a sensitivity check of that design choice (shorter false episodes against
    premature resolves of real ones), not a setting users have."""

    def run(points: Sequence[WindowPoint], start: int, fw: int) -> tuple[list[bool], int, int]:
        shipped = cusum.CAP_ABOVE_H
        cusum.CAP_ABOVE_H = cap_above_h
        try:
            return alert_series(rule, points, start, fw)
        finally:
            cusum.CAP_ABOVE_H = shipped

    return run


def detectors(rules: dict[str, Rule]) -> dict[str, Series]:
    def of(rule: Rule) -> Series:
        return lambda points, start, fw: alert_series(rule, points, start, fw)

    caps = {
        f"cusum k=0.75, cap h+{c} (what-if)": with_cap(rules[DEFAULT_CUSUM], c)
        for c in CAP_VARIANTS
    }
    return {**{name: of(rule) for name, rule in rules.items()}, **caps, YARDSTICK: yardstick_series}


# --------------------------------------------------------------------------- measurements


def wilson_upper(k: int, n: int, z: float = 1.959964) -> float:
    """Upper end of the 95% Wilson interval of a proportion (ignores the within-stream
    correlation of windows, so it is indicative)."""
    if n == 0:
        return float("nan")
    phat = k / n
    centre = phat + z * z / (2 * n)
    half = z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n))
    return (centre + half) / (1 + z * z / n)


def false_alarms(
    cal: Calibration, rules: dict[str, Rule], sizes: Sequence[tuple[int, int, int]]
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for size_index, (labels, streams, evaluated) in enumerate(sizes):
        names = list(detectors(rules))
        counts = {(name, fw): 0 for name in names for fw in FOR_WINDOWS}
        episodes = {(name, fw): 0 for name in names for fw in FOR_WINDOWS}
        total = 0
        losses: list[float] = []
        stderrs: list[float] = []
        for s in range(streams):
            rng = np.random.default_rng([SEED, 1, size_index, s])
            points = simulate_stream(rng, cal, labels, [0.0] * (REFERENCE_WINDOWS + evaluated))
            total += evaluated
            losses += [p.log_loss for p in points if p.log_loss is not None]
            stderrs += [p.log_loss_stderr for p in points if p.log_loss_stderr is not None]
            for name, series in detectors(rules).items():
                for fw in FOR_WINDOWS:
                    fired, onsets, _ = series(points, REFERENCE_WINDOWS, fw)
                    counts[name, fw] += sum(fired)
                    episodes[name, fw] += onsets
        for name in names:
            row: dict[str, object] = {
                "rule": name,
                "labels_per_window": labels,
                "streams": streams,
                "windows": total,
                "mean_log_loss": statistics.fmean(losses),
                "mean_stderr": statistics.fmean(stderrs),
            }
            for fw in FOR_WINDOWS:
                k = counts[name, fw]
                row[f"for{fw}_firing"] = k
                row[f"for{fw}_rate"] = k / total
                row[f"for{fw}_rate_upper95"] = wilson_upper(k, total)
                row[f"for{fw}_episodes"] = episodes[name, fw]
                row[f"for{fw}_episode_rate"] = episodes[name, fw] / total
                row[f"for{fw}_episode_rate_upper95"] = wilson_upper(episodes[name, fw], total)
            rows.append(row)
    return rows


def degradation_taus(cal: Calibration, shape: str) -> list[float]:
    healthy = [0.0] * (REFERENCE_WINDOWS + HEALTHY_BEFORE)
    if shape == "abrupt":
        degraded = [cal.tau_full] * HORIZON
    else:
        degraded = [cal.tau_ramp[min(k, RAMP_WINDOWS - 1)] for k in range(HORIZON)]
    return healthy + degraded


def detection(
    cal: Calibration, rules: dict[str, Rule], streams: int
) -> tuple[list[dict[str, object]], dict[str, float]]:
    t0 = REFERENCE_WINDOWS + HEALTHY_BEFORE
    rows: list[dict[str, object]] = []
    achieved: dict[str, float] = {}
    for shape_index, shape in enumerate(("abrupt", "gradual")):
        taus = degradation_taus(cal, shape)
        names = list(detectors(rules))
        delays: dict[tuple[str, int], list[int | None]] = {
            (name, fw): [] for name in names for fw in FOR_WINDOWS
        }
        flapped: dict[tuple[str, int], int] = {
            (name, fw): 0 for name in names for fw in FOR_WINDOWS
        }
        healthy_losses: list[float] = []
        full_losses: list[float] = []
        for s in range(streams):
            rng = np.random.default_rng([SEED, 2, shape_index, s])
            points = simulate_stream(rng, cal, DETECTION_LABELS, taus)
            healthy_losses += [p.log_loss for p in points[:t0] if p.log_loss is not None]
            full_start = t0 if shape == "abrupt" else t0 + RAMP_WINDOWS - 1
            full_losses += [p.log_loss for p in points[full_start:] if p.log_loss is not None]
            for name, series in detectors(rules).items():
                for fw in FOR_WINDOWS:
                    fired, _, resolves = series(points, t0, fw)
                    first = next((i for i, f in enumerate(fired) if f), None)
                    # Every window from t0 on is degraded: any resolve is premature.
                    flapped[name, fw] += resolves > 0
                    delays[name, fw].append(None if first is None else first + 1)
        achieved[shape] = statistics.fmean(full_losses) / statistics.fmean(healthy_losses) - 1
        for (name, fw), ds in delays.items():
            hit = [d for d in ds if d is not None]
            # Undetected streams sort last (as +inf) for the median.
            ordered = sorted(d if d is not None else math.inf for d in ds)
            rows.append(
                {
                    "rule": name,
                    "shape": shape,
                    "for_windows": fw,
                    "streams": len(ds),
                    "detected_share": len(hit) / len(ds),
                    "median_delay": statistics.median(ordered),
                    "mean_delay_detected": statistics.fmean(hit) if hit else None,
                    "within_3_share": sum(1 for d in hit if d <= 3) / len(ds),
                    "within_5_share": sum(1 for d in hit if d <= 5) / len(ds),
                    "resolved_while_degraded_share": flapped[name, fw] / len(ds),
                }
            )
    return rows, achieved


# --------------------------------------------------------------------------- output


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> str:
    """Plain text table: the first ``right`` columns left-aligned, the rest right-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def fmt(cells: Sequence[str]) -> str:
        return " | ".join(
            c.ljust(w) if i < right else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([fmt(headers), rule, *(fmt(r) for r in rows)])


def pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def delay_str(x: object) -> str:
    if x is None:
        return "-"
    assert isinstance(x, float | int)
    return f">{HORIZON}" if math.isinf(x) else f"{x:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small smoke run (seconds)")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    cal = calibrate()
    rules = make_rules(cal)
    static = rules[STATIC]
    assert isinstance(static, LogLossAbove)
    calibrated_at = time.perf_counter()

    sizes = QUICK_FALSE_ALARM if args.quick else FULL_FALSE_ALARM
    fa_rows = false_alarms(cal, rules, sizes)
    fa_at = time.perf_counter()
    det_streams = QUICK_DETECTION_STREAMS if args.quick else FULL_DETECTION_STREAMS
    det_rows, achieved = detection(cal, rules, det_streams)
    finished = time.perf_counter()

    skill = 1 - cal.stationary_log_loss / cal.baseline_log_loss
    print(f"alerts bench{' (--quick)' if args.quick else ''}, seed {SEED}")
    print(
        f"stream: base rate {BASE_RATE}, latent logit N({cal.mu:.3f}, {SIGMA}²); healthy "
        f"model log loss {cal.stationary_log_loss:.4f} vs baseline "
        f"{cal.baseline_log_loss:.4f} (skill {skill:.3f})"
    )
    print(
        f"degradation: logit noise τ = {cal.tau_full:.4f} calibrated for "
        f"+{DEGRADATION:.0%} expected log loss on {CALIBRATION_ROWS:,} rows; achieved on the "
        f"simulated windows ({DETECTION_LABELS:,} labels): abrupt {achieved['abrupt']:+.2%}, "
        f"gradual after the ramp {achieved['gradual']:+.2%}"
    )
    ramp = ", ".join(f"{t:.3f}" for t in cal.tau_ramp)
    print(f"gradual ramp τ (+2% … +20% over {RAMP_WINDOWS} windows): {ramp}")
    print(
        f"rules: trend K=6 alpha=0.01; relative_to_reference reference = first "
        f"{REFERENCE_WINDOWS} windows, max_increase 0.05 or 0, alpha=0.01; log_loss_above "
        f"threshold {static.threshold} = 1.1 × stationary mean log loss "
        f"{cal.stationary_log_loss:.4f} (expected value from the calibration sample)"
    )
    for shape, value in achieved.items():
        if abs(value - DEGRADATION) > DEGRADATION_TOLERANCE:
            print(f"WARNING: achieved {shape} increase {value:+.2%} is outside 20% ± 2%")

    print()
    print(
        "False alarms on stationary streams: alert episodes started per evaluated window "
        "(the notifications sent), and the share of evaluated windows on which the rule fires"
    )
    print(
        table(
            [
                "rule",
                "labels/window",
                "streams",
                "windows",
                "episodes/window (for=1)",
                "95% up",
                "firing windows (for=1)",
                "95% up",
                "for=2",
                "target",
            ],
            [
                [
                    str(r["rule"]),
                    f"{r['labels_per_window']:,}",
                    str(r["streams"]),
                    f"{r['windows']:,}",
                    f"{pct(float(str(r['for1_episode_rate'])))} ({r['for1_episodes']})",
                    pct(float(str(r["for1_episode_rate_upper95"]))),
                    f"{pct(float(str(r['for1_rate'])))} ({r['for1_firing']})",
                    pct(float(str(r["for1_rate_upper95"]))),
                    f"{pct(float(str(r['for2_rate'])))} ({r['for2_firing']})",
                    "-"
                    if r["rule"] in (STATIC, YARDSTICK) or "what-if" in str(r["rule"])
                    else "<= 1%",
                ]
                for r in fa_rows
            ],
        )
    )
    noise = {int(str(r["labels_per_window"])): float(str(r["mean_stderr"])) for r in fa_rows}
    print(
        "mean per-window log-loss stderr: "
        + ", ".join(
            f"{s:.4f} at {n:,} labels ({s / cal.stationary_log_loss:.1%} of the loss)"
            for n, s in noise.items()
        )
    )
    print()
    print(
        f"Detection delay at {DETECTION_LABELS:,} labels/window, {det_streams} streams each: "
        f"degraded windows seen until the first firing (1 = the first degraded window)"
    )
    print(
        table(
            [
                "rule",
                "shape",
                "for",
                "detected",
                "median",
                "mean (detected)",
                "<= 3 windows",
                "<= 5 windows",
                "resolved while degraded",
            ],
            [
                [
                    str(r["rule"]),
                    str(r["shape"]),
                    str(r["for_windows"]),
                    pct(float(str(r["detected_share"]))),
                    delay_str(r["median_delay"]),
                    delay_str(r["mean_delay_detected"]),
                    pct(float(str(r["within_3_share"]))),
                    pct(float(str(r["within_5_share"]))),
                    pct(float(str(r["resolved_while_degraded_share"]))),
                ]
                for r in det_rows
            ],
            right=2,
        )
    )
    print()
    print(
        f"runtime {finished - started:.1f} s (calibration {calibrated_at - started:.1f} s, "
        f"false alarms {fa_at - calibrated_at:.1f} s, detection {finished - fa_at:.1f} s)"
    )

    results = {
        "quick": args.quick,
        "seed": SEED,
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "calibration": {
            "base_rate": BASE_RATE,
            "sigma": SIGMA,
            "mu": cal.mu,
            "stationary_log_loss": cal.stationary_log_loss,
            "baseline_log_loss": cal.baseline_log_loss,
            "tau_full": cal.tau_full,
            "tau_ramp": list(cal.tau_ramp),
            "achieved_increase": achieved,
        },
        "rules": {name: rule.model_dump(mode="json") for name, rule in rules.items()},
        "min_labeled": MIN_LABELED,
        "false_alarms": fa_rows,
        "detection": {
            "labels_per_window": DETECTION_LABELS,
            "horizon": HORIZON,
            "rows": [
                {k: (None if isinstance(v, float) and math.isinf(v) else v) for k, v in r.items()}
                for r in det_rows
            ],
        },
        "runtime_seconds": finished - started,
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{NAME}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
