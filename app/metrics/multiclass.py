"""All metrics of one (or many) multiclass windows: the K-class twin of window.py.

A row is a probability per class (an (n, K) array, column k = class k) and its label is
the index of the class that happened. The definitions follow the binary ones with the
label distribution in place of the positive rate; for K = 2 they agree with
binary_window_stats on score = p[:, 1].
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.metrics.baseline import categorical_entropy
from app.metrics.calibration import reliability_table
from app.metrics.groups import check_group_keys, group_rows
from app.metrics.logloss import (
    DEFAULT_EPS,
    categorical_entropies,
    class_indexes,
    multiclass_losses,
)
from app.metrics.stats import weighted_quantiles, weighted_stderr
from app.metrics.window import WindowStats, unscored

FloatArray = npt.NDArray[np.float64]

_QUANTILE_LEVELS = np.array([0.5, 0.9], dtype=np.float64)


def _check_inputs(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, weights: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"probabilities must be an (n, K) array with K >= 2, got {p.shape}")
    if y.ndim != 1 or w.ndim != 1 or y.shape[0] != p.shape[0] or w.shape != y.shape:
        raise ValueError("labels and weights must be 1-D with one entry per probability row")
    if not ((p >= 0.0) & (p <= 1.0)).all():
        raise ValueError("probabilities must lie in [0, 1]")
    return p, y, w


def _class_mean(losses: FloatArray, w: FloatArray, rows: npt.NDArray[np.bool_]) -> float | None:
    class_weight = float(w[rows].sum())
    # No row of the class (or only zero-weight ones): its mean loss is 0 / 0.
    if class_weight == 0.0:
        return None
    return float(np.dot(w[rows], losses[rows])) / class_weight


def multiclass_window_stats(
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike,
    eps: float = DEFAULT_EPS,
) -> WindowStats:
    """Metrics of one multiclass window.

    ``probabilities`` is (n, K); ``labels`` is NaN where a prediction has no actual yet,
    else the class index as a float (0.0, 1.0, ...); ``weights`` is ignored on the
    unlabeled rows.
    """
    p_all, y_all, w_all = _check_inputs(probabilities, labels, weights)
    predictions, n_classes = p_all.shape
    if predictions == 0:
        return unscored(0, 0, 0.0, None)

    # Uses every prediction: it needs no label, so it is available before actuals land.
    expected = float(np.mean(categorical_entropies(p_all, eps)))

    mask = ~np.isnan(y_all)
    n = int(np.count_nonzero(mask))
    y = class_indexes(y_all[mask], n_classes)
    w = w_all[mask]
    if not (np.isfinite(w) & (w >= 0.0)).all():
        raise ValueError("weights of labeled rows must be finite and non-negative")
    weight_sum = float(w.sum())
    if n == 0 or weight_sum == 0.0:
        return unscored(predictions, n, weight_sum, expected)

    p = p_all[mask]
    losses = multiclass_losses(p, y, eps)
    log_loss = float(np.dot(w, losses) / weight_sum)

    in_class = [y == k for k in range(n_classes)]
    # Each class's own weights summed the way weight_sum was (rather than a bincount)
    # make the rate exactly 1.0 when every label is that class, so the baseline is an
    # exact 0 and skill None; the clamp absorbs last-ulp overshoot otherwise.
    rates = tuple(min(max(float(w[rows].sum()) / weight_sum, 0.0), 1.0) for rows in in_class)
    baseline = categorical_entropy(np.array(rates, dtype=np.float64))
    skill = None if baseline == 0.0 else 1.0 - log_loss / baseline

    median, p90 = (float(x) for x in weighted_quantiles(losses, w, _QUANTILE_LEVELS))
    # Raw probabilities: clipping could tie classes that the model told apart.
    top = np.argmax(p, axis=1)
    correct = top == y
    accuracy = float(w[correct].sum()) / weight_sum
    # Top-label calibration: does the model's confidence in its pick match how often
    # the pick is right?
    confidence = p[np.arange(n), top]
    reliability, ece = reliability_table(confidence, correct.astype(np.float64), w)

    return WindowStats(
        predictions=predictions,
        labeled=n,
        label_coverage=n / predictions,
        weight_sum=weight_sum,
        positive_rate=None,
        log_loss=log_loss,
        baseline_log_loss=baseline,
        skill=skill,
        log_loss_stderr=weighted_stderr(losses, w, log_loss),
        log_loss_median=median,
        log_loss_p90=p90,
        expected_log_loss=expected,
        accuracy=accuracy,
        class_rates=rates,
        class_log_loss=tuple(_class_mean(losses, w, rows) for rows in in_class),
        reliability=reliability,
        ece=ece,
        calibration_gap=log_loss - expected,
    )


def multiclass_stats_by_group(
    group_keys: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike,
    eps: float = DEFAULT_EPS,
) -> dict[int, WindowStats]:
    """multiclass_window_stats for every distinct integer key (e.g. window start)."""
    keys = check_group_keys(group_keys)
    p, y, w = _check_inputs(probabilities, labels, weights)
    if keys.shape[0] != p.shape[0]:
        raise ValueError("group_keys must have one entry per probability row")
    return {
        key: multiclass_window_stats(p[rows], y[rows], w[rows], eps)
        for key, rows in group_rows(keys)
    }
