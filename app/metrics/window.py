"""All metrics of one (or many) binary windows, from the window's raw prediction rows.

Every float returned is a plain Python float so the result can go straight into the
database and JSON without numpy scalar types leaking out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.metrics.baseline import baseline_log_loss
from app.metrics.calibration import ReliabilityBin, reliability_table
from app.metrics.groups import check_group_keys, group_rows
from app.metrics.logloss import DEFAULT_EPS, binary_entropy, binary_losses, clip
from app.metrics.stats import weighted_quantiles, weighted_stderr

FloatArray = npt.NDArray[np.float64]

_QUANTILE_LEVELS = np.array([0.5, 0.9], dtype=np.float64)


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


def _check_inputs(
    scores: npt.ArrayLike, labels: npt.ArrayLike, weights: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if s.ndim != 1 or s.shape != y.shape or s.shape != w.shape:
        raise ValueError("scores, labels and weights must be 1-D arrays of the same length")
    if not ((s >= 0.0) & (s <= 1.0)).all():
        raise ValueError("scores must be probabilities in [0, 1]")
    return s, y, w


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
        log_loss_median=None,
        log_loss_p90=None,
        expected_log_loss=expected,
        accuracy=None,
    )


def binary_window_stats(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike,
    eps: float = DEFAULT_EPS,
) -> WindowStats:
    """Metrics of one window.

    ``labels`` is NaN where a prediction has no actual yet, else 0.0 / 1.0; ``weights``
    is ignored on those unlabeled rows.
    """
    s, y_all, w_all = _check_inputs(scores, labels, weights)
    predictions = int(s.size)
    if predictions == 0:
        return unscored(0, 0, 0.0, None)

    p_all = clip(s, eps)
    # Uses every prediction: it needs no label, so it is available before actuals land.
    expected = float(np.mean(binary_entropy(p_all)))

    mask = ~np.isnan(y_all)
    n = int(np.count_nonzero(mask))
    coverage = n / predictions
    y = y_all[mask]
    w = w_all[mask]
    if not ((y == 0.0) | (y == 1.0)).all():
        raise ValueError("labels must be 0.0, 1.0 or NaN")
    if not (np.isfinite(w) & (w >= 0.0)).all():
        raise ValueError("weights of labeled rows must be finite and non-negative")
    weight_sum = float(w.sum())

    if n == 0 or weight_sum == 0.0:
        return unscored(predictions, n, weight_sum, expected)

    p = p_all[mask]
    positive = y == 1.0
    losses = binary_losses(p, y, eps)
    log_loss = float(np.dot(w, losses) / weight_sum)

    # Summing the positive rows' own weights (rather than dot(w, y)) makes q exactly 1.0
    # when every label is 1: the same array is summed the same way as weight_sum. The
    # clamp absorbs the last-ulp overshoot a different summation order could produce.
    q = min(max(float(w[positive].sum()) / weight_sum, 0.0), 1.0)
    baseline = baseline_log_loss(q)
    skill = None if baseline == 0.0 else 1.0 - log_loss / baseline

    median, p90 = (float(x) for x in weighted_quantiles(losses, w, _QUANTILE_LEVELS))
    correct = (p >= 0.5) == positive
    accuracy = float(w[correct].sum()) / weight_sum
    # The raw score, not the clipped one: clipping exists only to keep the logarithm
    # finite, while the table should show what the model actually said.
    reliability, ece = reliability_table(s[mask], y, w)

    return WindowStats(
        predictions=predictions,
        labeled=n,
        label_coverage=coverage,
        weight_sum=weight_sum,
        positive_rate=q,
        log_loss=log_loss,
        baseline_log_loss=baseline,
        skill=skill,
        log_loss_stderr=weighted_stderr(losses, w, log_loss),
        log_loss_median=median,
        log_loss_p90=p90,
        expected_log_loss=expected,
        accuracy=accuracy,
        reliability=reliability,
        ece=ece,
        calibration_gap=log_loss - expected,
    )


def stats_by_group(
    group_keys: npt.ArrayLike,
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike,
    eps: float = DEFAULT_EPS,
) -> dict[int, WindowStats]:
    """binary_window_stats for every distinct integer key (e.g. window start epoch).

    Lets many windows be computed from one query result with a single sort.
    """
    keys = check_group_keys(group_keys)
    s, y, w = _check_inputs(scores, labels, weights)
    if keys.shape != s.shape:
        raise ValueError("group_keys must have the same length as scores")
    return {
        key: binary_window_stats(s[rows], y[rows], w[rows], eps) for key, rows in group_rows(keys)
    }
