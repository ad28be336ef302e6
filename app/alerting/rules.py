"""Alert rules and their evaluation on a model's metric windows: pure functions only.

Nothing here touches the database or the clock. The evaluator loads a model's recent
windows (see :func:`lookback`), turns them into :class:`WindowPoint` values, asks
:func:`evaluate` for a :class:`Verdict` and :func:`transition` whether that verdict
opens or closes an alert episode.

Statistical rules (``trend``, ``relative_to_reference``) test against the sampling noise
each window already reports (``log_loss_stderr``), so a window with 200 labels needs a
much larger excursion to fire than one with 100,000. A one-sided test at level alpha on
each evaluated window means that, on a stationary stream, the rule holds on at most
about alpha of the windows (``bench/alerts.py`` measures this).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from statistics import NormalDist
from typing import Annotated, Any, Literal, Protocol

from pydantic import Field, TypeAdapter, model_validator

# Re-exported: callers and tests know the points and every rule type from here.
from app.alerting.cusum import Cusum as Cusum
from app.alerting.cusum import cusum_holds, cusum_lookback
from app.alerting.points import WindowPoint as WindowPoint
from app.alerting.points import point_of as point_of
from app.alerting.rule_base import RuleBase
from app.alerting.window_rules import CalibrationGapAbove as CalibrationGapAbove
from app.alerting.window_rules import LabelCoverageBelow as LabelCoverageBelow
from app.json_types import Timestamp, TrendWindows

# --------------------------------------------------------------------------- reference


@dataclass(frozen=True, slots=True)
class Reference:
    """Aggregate of the reference period's windows."""

    log_loss: float
    stderr: float
    labeled: int


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(x)


def reference_from(points: Sequence[WindowPoint], *, min_labeled: int = 0) -> Reference | None:
    """Pool the reference period's windows into one log loss with its standard error.

    The pooled loss is the weight-sum-weighted mean of the windows' losses, i.e. the
    loss of all reference rows taken together, so a thin window counts for little.
    Windows are independent samples, hence stderr = sqrt(Σ W_j² se_j²) / Σ W_j.

    A window is usable when it has a finite loss and stderr, a positive weight sum and
    at least ``min_labeled`` labeled rows (pass the monitor's own minimum so the
    reference is built from the same kind of windows it is compared with). None when no
    window is usable: without a reference the relative rule cannot be judged.
    """
    usable = [
        p
        for p in points
        if p.labeled >= min_labeled
        and _finite(p.log_loss)
        and _finite(p.log_loss_stderr)
        and math.isfinite(p.weight_sum)
        and p.weight_sum > 0.0
    ]
    if not usable:
        return None
    total = math.fsum(p.weight_sum for p in usable)
    # Normalised weights v_j = W_j / ΣW rather than dividing at the end: with a single
    # window v = 1.0 exactly, so the reference is that window's loss and stderr bit for
    # bit, and hypot() (exact for one term) never over/underflows on the squares.
    shares = [p.weight_sum / total for p in usable]
    log_loss = math.fsum(v * _f(p.log_loss) for v, p in zip(shares, usable, strict=True))
    stderr = math.hypot(*(v * _f(p.log_loss_stderr) for v, p in zip(shares, usable, strict=True)))
    return Reference(
        log_loss=log_loss,
        stderr=stderr,
        labeled=sum(p.labeled for p in usable),
    )


def _f(x: float | None) -> float:
    # Only called after _finite() has ruled out None; keeps mypy from widening.
    assert x is not None
    return x


# --------------------------------------------------------------------------- rules

_ALPHA_DESCRIPTION = (
    "One-sided significance level: on a stationary stream the rule holds on about this "
    "share of evaluated windows (at most)."
)


class LogLossAbove(RuleBase):
    """The window's log loss exceeds a fixed threshold (no significance test)."""

    type: Literal["log_loss_above"] = "log_loss_above"
    threshold: float = Field(
        gt=0.0,
        strict=True,
        allow_inf_nan=False,
        description="Holds when the window's log loss (nats) is strictly above this.",
    )


class SkillBelow(RuleBase):
    """The window's skill (1 − L / baseline) falls below a threshold."""

    type: Literal["skill_below"] = "skill_below"
    threshold: float = Field(
        le=1.0,
        strict=True,
        allow_inf_nan=False,
        description=(
            "Holds when skill = 1 − log loss / naive-baseline log loss is strictly below "
            "this. 0 means 'no better than predicting the base rate'; at most 1."
        ),
    )


class Trend(RuleBase):
    """Log loss rises with statistical significance over the last K evaluated windows.

    A one-sided z test on the weighted least-squares slope, with precision weights from
    the windows' pooled stderrs and an overdispersion correction: see :func:`trend_test`
    and :func:`pooled_stderrs`.
    """

    type: Literal["trend"] = "trend"
    windows: TrendWindows = Field(
        default=6,
        description=(
            "K: number of most recent evaluated windows the slope is fitted on (>= 3 so "
            "that the residual scatter can be estimated)."
        ),
    )
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5, strict=True, description=_ALPHA_DESCRIPTION)


class RelativeToReference(RuleBase):
    """Log loss exceeds the reference period's by more than ``max_increase``, significantly."""

    type: Literal["relative_to_reference"] = "relative_to_reference"
    reference_start: Timestamp = Field(
        description="Start of the reference period (inclusive), with a UTC offset."
    )
    reference_end: Timestamp = Field(
        description=(
            "End of the reference period (exclusive), with a UTC offset. Windows whose "
            "start lies in [reference_start, reference_end) form the reference."
        )
    )
    max_increase: float = Field(
        default=0.1,
        ge=0.0,
        le=100.0,
        strict=True,
        allow_inf_nan=False,
        description=(
            "Tolerated relative increase: holds when log loss > (1 + max_increase) × "
            "reference log loss with significance (0.1 = 10% worse)."
        ),
    )
    alpha: float = Field(default=0.01, gt=0.0, lt=0.5, strict=True, description=_ALPHA_DESCRIPTION)

    @model_validator(mode="after")
    def _period_not_empty(self) -> RelativeToReference:
        if self.reference_end <= self.reference_start:
            raise ValueError("reference_end must be after reference_start")
        return self


Rule = Annotated[
    LogLossAbove
    | SkillBelow
    | Trend
    | RelativeToReference
    | CalibrationGapAbove
    | LabelCoverageBelow
    | Cusum,
    Field(discriminator="type"),
]

RULE_ADAPTER: TypeAdapter[Rule] = TypeAdapter(Rule)


def parse_rule(data: Mapping[str, Any]) -> Rule:
    """Validate a stored / submitted rule body (raises pydantic.ValidationError)."""
    return RULE_ADAPTER.validate_python(data)


class ReferencePeriod(Protocol):
    reference_start: datetime
    reference_end: datetime


def reference_range(rule: ReferencePeriod) -> tuple[int, int]:
    """[first, end) in epoch seconds: a window belongs to the reference iff
    first <= window_start < end.

    Window starts are whole seconds, so rounding both bounds up keeps exactly the
    windows whose start lies in [reference_start, reference_end).
    """
    return _ceil_epoch(rule.reference_start), _ceil_epoch(rule.reference_end)


def _ceil_epoch(dt: datetime) -> int:
    return math.ceil(dt.timestamp())


@lru_cache(maxsize=64)
def _z_quantile(alpha: float) -> float:
    """z_(1−alpha) of the standard normal (no scipy needed)."""
    return NormalDist().inv_cdf(1.0 - alpha)


# --------------------------------------------------------------------------- holds


@dataclass(frozen=True, slots=True)
class TrendFit:
    """The weighted slope test of :func:`trend_test`, for reporting and tests."""

    slope: float  # b, log loss units per evaluated window
    slope_stderr: float  # se_b after the overdispersion correction
    dispersion: float  # residual chi² / (K − 2); > 1 means extra between-window scatter
    z: float  # b / slope_stderr


def trend_test(log_losses: Sequence[float], stderrs: Sequence[float]) -> TrendFit | None:
    """Weighted least-squares slope of log loss on window position, with its z.

    Model: L_i = a + b·x_i + e_i with x_i = 0, 1, …, K−1 (position among the evaluated
    windows, so windows skipped for too few labels do not stretch the fit; z does not
    depend on the scale of x) and Var e_i = s_i² (the trend rule passes the pooled
    stderrs of :func:`pooled_stderrs`).

    * Weights w_i = 1/s_i²; x̄ = Σw x / Σw, Sxx = Σ w (x − x̄)²,
      b = Σ w (x − x̄)(L − L̄) / Sxx, and with known variances se_b = sqrt(1 / Sxx).
      (This is np.polyfit(x, L, 1, w=1/s).)
    * Overdispersion: the s_i only describe row-sampling noise inside a window. Real
      streams also wander between windows (traffic mix, time of day), which would make
      an honest-looking slope out of pure fluctuation. The weighted residual
      chi² = Σ w (L − a − b x)² has expectation K − 2 when the s_i tell the whole story;
      if φ = chi² / (K − 2) > 1, se_b is inflated by sqrt(φ) (the usual WLS scale
      correction, as in the modified Knapp–Hartung meta-regression). Never deflated:
      φ < 1 is just chance with so few points, and trusting it would over-fire.
    * z = b / se_b. The rule holds iff b > 0 and z > z_(1−alpha) (one-sided: only a
      rising loss is a problem). Under the null with known variances z is N(0, 1), and
      the inflation only ever shrinks it, so the rule holds on at most alpha of the
      windows of a stationary stream.

    Trade-off kept on purpose: the normal quantile is used even after inflating by an
    estimated φ. When windows genuinely scatter far more than their stderrs say, the
    statistic tends to Student's t with K − 2 degrees of freedom and the rule holds on
    up to ~4% of windows at K = 6, alpha = 1% (still far below an unscaled test). A
    t_(K−2) quantile would restore alpha there but, at K = 6, roughly halves the chance
    of catching an abrupt +20% step within 3 windows (simulated at 1,000 labels).

    None when fewer than 3 points or any stderr is missing, non-finite or zero (a zero
    stderr would give one window infinite weight: nothing sensible can be said).
    """
    k = len(log_losses)
    if k < 3 or len(stderrs) != k:
        return None
    if not all(math.isfinite(y) for y in log_losses):
        return None
    if not all(math.isfinite(s) and s > 0.0 for s in stderrs):
        return None
    w = [1.0 / (s * s) for s in stderrs]
    if not all(math.isfinite(wi) for wi in w):
        return None  # s so small that 1/s² overflows: same as a zero stderr
    # Slope and residuals are shift-invariant; centring on the first value makes a
    # constant series exactly zero, so it yields b == 0.0 rather than rounding noise.
    y0 = log_losses[0]
    y = [li - y0 for li in log_losses]
    sw = math.fsum(w)
    x_bar = math.fsum(wi * i for i, wi in enumerate(w)) / sw
    y_bar = math.fsum(wi * yi for wi, yi in zip(w, y, strict=True)) / sw
    dx = [i - x_bar for i in range(k)]
    sxx = math.fsum(wi * d * d for wi, d in zip(w, dx, strict=True))
    if not sxx > 0.0:
        return None
    b = math.fsum(wi * d * (yi - y_bar) for wi, d, yi in zip(w, dx, y, strict=True)) / sxx
    chi2 = math.fsum(wi * (yi - y_bar - b * d) ** 2 for wi, d, yi in zip(w, dx, y, strict=True))
    dispersion = chi2 / (k - 2)
    se_b = math.sqrt(max(dispersion, 1.0) / sxx)
    return TrendFit(slope=b, slope_stderr=se_b, dispersion=dispersion, z=b / se_b)


def holds(
    rule: Rule,
    history: Sequence[WindowPoint],
    *,
    reference: Reference | None = None,
    origin: int | None = None,
) -> bool | None:
    """Does the rule's condition hold at the last point of ``history``?

    ``history`` is the evaluated windows (already filtered by the caller to those with
    enough labels), oldest first. None means "cannot be judged": a missing metric, too
    little history for a trend, or no reference for a relative rule. ``origin``: the
    window that resolved the series' last episode (a cusum restarts after it).
    """
    if not history:
        return None
    return spec_of(rule).holds(rule, history, Context(reference=reference, origin=origin))


def pooled_stderrs(stderrs: Sequence[float], labeled: Sequence[int]) -> list[float] | None:
    """Per-window stderrs rebuilt from the per-row variance pooled over the windows.

    Each window's stderr estimates sqrt(v / n_i), v being the per-row loss variance. On
    skewed data that estimate is strongly tied to the window's own loss: a window that
    happened to draw more positives (rare, expensive rows) has both a higher loss and a
    higher stderr (correlation ≈ 0.9 at 200 labels, base rate 0.1). Weighting by
    1/s_i² then systematically trusts the lucky low-loss windows, and z comes out too
    large: with the raw weights the rule held on 1.06% of 40,000 stationary 200-label
    windows at alpha = 1%. Pooling, v̄ = Σ (n_i − 1)·n_i s_i² / Σ (n_i − 1) (the classic
    pooled variance, each window's n_i s_i² having n_i − 1 degrees of freedom), and
    s̃_i = sqrt(v̄ / n_i), keeps each window's precision proportional to its labeled rows
    but independent of its own loss: 0.76% on the same windows (bench/alerts.py
    measures the rule as shipped).

    n_i is the labeled count: for weighted rows v then absorbs the weights' spread,
    which is right as long as the windows' weight mix is alike. None when a window has
    fewer than 2 labeled rows or a stderr that is not finite and positive.
    """
    if len(stderrs) != len(labeled) or not stderrs:
        return None
    if not all(math.isfinite(s) and s > 0.0 for s in stderrs) or min(labeled) < 2:
        return None
    dof = math.fsum(n - 1 for n in labeled)
    pooled = math.fsum((n - 1) * n * s * s for s, n in zip(stderrs, labeled, strict=True)) / dof
    return [math.sqrt(pooled / n) for n in labeled]


def _trend_holds(rule: Trend, history: Sequence[WindowPoint]) -> bool | None:
    recent = history[-rule.windows :]
    if len(recent) < rule.windows:
        return None
    losses: list[float] = []
    stderrs: list[float] = []
    for p in recent:
        if p.log_loss is None or p.log_loss_stderr is None:
            return None
        losses.append(p.log_loss)
        stderrs.append(p.log_loss_stderr)
    pooled = pooled_stderrs(stderrs, [p.labeled for p in recent])
    if pooled is None:
        return None
    fit = trend_test(losses, pooled)
    if fit is None:
        return None
    return fit.slope > 0.0 and fit.z > _z_quantile(rule.alpha)


def _relative_holds(
    rule: RelativeToReference, last: WindowPoint, reference: Reference | None
) -> bool | None:
    if reference is None or last.log_loss is None:
        return None
    factor = 1.0 + rule.max_increase
    limit = factor * reference.log_loss
    excess = last.log_loss - limit
    if not excess > 0.0:
        # At or below the tolerated level: clearly does not hold, whatever the noise.
        return False
    if last.log_loss_stderr is None:
        return None
    # The window and the reference are independent estimates; the limit carries the
    # reference's noise scaled by the same factor.
    noise = math.hypot(last.log_loss_stderr, factor * reference.stderr)
    if not noise > 0.0:
        return None  # zero claimed noise: no meaningful significance statement
    return excess / noise > _z_quantile(rule.alpha)


# --------------------------------------------------------------------------- verdicts


@dataclass(frozen=True, slots=True)
class Verdict:
    firing: bool  # the condition held at each of the last `for_windows` judged points
    last: WindowPoint | None  # the newest evaluated point (the window reported in the alert)
    holds_last: bool | None  # holds() at the newest point (None: not judgeable)


def evaluable(
    points: Sequence[WindowPoint], min_labeled: int, rule: Rule | None = None
) -> list[WindowPoint]:
    """The points the rules are judged on: enough labels and a log loss.

    Thin windows are skipped rather than treated as healthy: "no data" must neither
    fire nor resolve an alert, and it must not break a run of bad windows either.
    ``calibration_gap_above`` needs a calibration gap instead of a log loss;
    ``label_coverage_below`` gates on predictions and skips its grace windows (see
    window_rules.py).
    """
    if rule is None:
        return gated(points, min_labeled, "labeled", "log_loss")
    spec = spec_of(rule)
    return spec.evaluable(rule, points, min_labeled)


def evaluate(
    rule: Rule,
    points: Sequence[WindowPoint],
    *,
    for_windows: int,
    min_labeled: int,
    reference: Reference | None = None,
    origin: int | None = None,
) -> Verdict:
    """Judge a model's recent windows (oldest first, unfiltered).

    Windows with fewer than ``min_labeled`` labeled rows or no log loss are dropped
    first (:func:`evaluable` says how the calibration and coverage rules differ). The
    rule is then judged at each remaining point using only the points up to it;
    ``firing`` iff there are at least ``for_windows`` evaluated points and the rule
    holds (True, not None) at each of the last ``for_windows`` of them. An unjudgeable
    point among them therefore blocks firing: an alert needs positive evidence.
    """
    if for_windows < 1:
        raise ValueError("for_windows must be >= 1")
    evaluated = evaluable(points, min_labeled, rule)
    if not evaluated:
        return Verdict(firing=False, last=None, holds_last=None)
    n = len(evaluated)
    # Only the last for_windows judgements matter, each on the history up to its point.
    judged = [
        holds(rule, evaluated[: i + 1], reference=reference, origin=origin)
        for i in range(max(0, n - for_windows), n)
    ]
    firing = len(judged) >= for_windows and all(h is True for h in judged)
    return Verdict(firing=firing, last=evaluated[-1], holds_last=judged[-1])


def transition(was_firing: bool, verdict: Verdict) -> Literal["fire", "resolve"] | None:
    """What the evaluator should do to the monitor's alert state.

    * "fire": not firing yet and the rule held for ``for_windows`` evaluated windows.
    * "resolve": firing and the newest evaluated window clearly no longer satisfies the
      rule (holds_last is False). Unjudgeable or missing data keeps the alert open:
      silence is not recovery.
    * None otherwise. In particular no second "fire" while an episode is open.
    """
    if not was_firing:
        return "fire" if verdict.firing else None
    return "resolve" if verdict.holds_last is False else None


def lookback(rule: Rule, for_windows: int) -> int:
    """How many of the most recent evaluated windows :func:`evaluate` needs.

    Each of the last ``for_windows`` judgements looks at its own point, and a trend
    also at the K − 1 points before it. (The reference period of a relative rule is
    loaded separately and pooled with :func:`reference_from`.) A coverage rule also
    needs its grace windows after them: evaluate() must see them to know what to skip.
    """
    if for_windows < 1:
        raise ValueError("for_windows must be >= 1")
    return spec_of(rule).lookback(rule, for_windows)


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may need beyond the windows it judges."""

    reference: Reference | None = None  # the pooled reference period (uses_reference)
    # Start of the window that resolved the series' last episode (a cusum restarts there).
    origin: int | None = None


def gated(
    points: Sequence[WindowPoint], min_size: int, size_field: str, metric: str
) -> list[WindowPoint]:
    """Points whose `size_field` reaches min_size and whose `metric` is known."""
    return [
        p for p in points if getattr(p, size_field) >= min_size and getattr(p, metric) is not None
    ]


def _same_lookback(rule: Any, for_windows: int) -> int:
    return for_windows


def _no_grace(rule: Any) -> int:
    return 0


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """Everything about one rule type, declared once.

    `size_field` / `metric` say which windows the rule is judged on (size_field ≥ the
    monitor's min_labeled and metric not null): evaluable() filters points with them and
    alerting/series.py turns the same two names into the SQL gate, so the LIMIT of a
    window query counts exactly the windows the rule judges.
    """

    body: type[RuleBase]  # the Pydantic rule body: validation and the OpenAPI schema
    holds: Callable[[Any, Sequence[WindowPoint], Context], bool | None]
    metric: str = "log_loss"
    size_field: str = "labeled"
    # How many most recent evaluated windows evaluate() needs (for_windows -> count).
    lookback: Callable[[Any, int], int] = _same_lookback
    # The newest this-many windows with predictions are never judged (still filling).
    grace: Callable[[Any], int] = _no_grace
    # Judged against a reference period (the rule body is a ReferencePeriod), pooled
    # into Context.reference.
    uses_reference: bool = False

    @property
    def has_grace(self) -> bool:
        return self.grace is not _no_grace

    @property
    def type(self) -> str:
        default: str = self.body.model_fields["type"].default
        return default

    def evaluable(
        self, rule: Any, points: Sequence[WindowPoint], min_size: int
    ) -> list[WindowPoint]:
        if not self.has_grace:
            return gated(points, min_size, self.size_field, self.metric)
        # The grace period is counted in windows that have predictions, whatever their
        # size: it stands for the time labels need to arrive. Points need not come sorted.
        grace = self.grace(rule)
        ordered = sorted((p for p in points if p.predictions > 0), key=lambda p: p.window_start)
        settled = ordered[: len(ordered) - grace] if grace else ordered
        return gated(settled, min_size, self.size_field, self.metric)


def _last_above(field: str) -> Callable[[Any, Sequence[WindowPoint], Context], bool | None]:
    def holds(rule: Any, history: Sequence[WindowPoint], ctx: Context) -> bool | None:
        value = getattr(history[-1], field)
        return None if value is None else bool(value > rule.threshold)

    return holds


def _last_below(field: str) -> Callable[[Any, Sequence[WindowPoint], Context], bool | None]:
    def holds(rule: Any, history: Sequence[WindowPoint], ctx: Context) -> bool | None:
        value = getattr(history[-1], field)
        return None if value is None else bool(value < rule.threshold)

    return holds


SPECS: tuple[RuleSpec, ...] = (
    RuleSpec(LogLossAbove, _last_above("log_loss")),
    RuleSpec(SkillBelow, _last_below("skill")),
    RuleSpec(
        Trend,
        lambda rule, history, ctx: _trend_holds(rule, history),
        lookback=lambda rule, for_windows: for_windows + rule.windows - 1,
    ),
    RuleSpec(
        RelativeToReference,
        lambda rule, history, ctx: _relative_holds(rule, history[-1], ctx.reference),
        uses_reference=True,
    ),
    RuleSpec(CalibrationGapAbove, _last_above("calibration_gap"), metric="calibration_gap"),
    RuleSpec(
        LabelCoverageBelow,
        _last_below("label_coverage"),
        metric="label_coverage",
        # Few labels is what this rule detects: its size gate counts predictions.
        size_field="predictions",
        # evaluate() must see the grace windows after the judged ones to skip them.
        lookback=lambda rule, for_windows: for_windows + rule.grace_windows,
        grace=lambda rule: rule.grace_windows,
    ),
    RuleSpec(
        Cusum,
        lambda rule, history, ctx: cusum_holds(
            rule,
            history,
            ref_log_loss=ctx.reference.log_loss if ctx.reference else None,
            ref_stderr=ctx.reference.stderr if ctx.reference else None,
            origin=ctx.origin,
        ),
        lookback=lambda rule, for_windows: cusum_lookback(for_windows),
        uses_reference=True,
    ),
)
_BY_TYPE: dict[str, RuleSpec] = {spec.type: spec for spec in SPECS}


def spec_of(rule: RuleBase) -> RuleSpec:
    try:
        return _BY_TYPE[getattr(rule, "type", "")]
    except KeyError:
        raise TypeError(f"unknown rule type {type(rule).__name__}") from None
