"""WindowSums of many windows (or slices) at once, from numpy row arrays.

The numpy producer of app.metrics.window_stats: one bincount per statistic over all
rows (keyed by group) instead of a loop of small numpy calls per group, which is what
a window with dozens of slices spent its time on. A group's sums are accumulated over
its rows in their original order whatever else the arrays hold, so a group computed
among others is bit-identical to the same rows computed alone.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.metrics.calibration import DEFAULT_BINS
from app.metrics.groups import check_group_keys
from app.metrics.logloss import (
    DEFAULT_EPS,
    binary_entropy,
    binary_losses,
    categorical_entropies,
    class_indexes,
    clip,
    multiclass_losses,
)
from app.metrics.window_stats import BINARY, MULTICLASS, WindowSums

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


def check_binary(
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


def check_multiclass(
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


def _check_weights(w: FloatArray) -> None:
    if not (np.isfinite(w) & (w >= 0.0)).all():
        raise ValueError("weights of labeled rows must be finite and non-negative")


def _sum(index: IntArray, values: FloatArray | None, size: int) -> FloatArray:
    return np.bincount(index, weights=values, minlength=size).astype(np.float64, copy=False)


def _assemble(
    *,
    task: str,
    group_ids: npt.NDArray[np.integer],
    g_all: IntArray,
    entropies: FloatArray,
    g: IntArray,
    w: FloatArray,
    losses: FloatArray,
    classes: IntArray,
    n_classes: int,
    correct: npt.NDArray[np.bool_],
    predicted: FloatArray,
    outcome: FloatArray,
) -> dict[int, WindowSums]:
    """Per-group WindowSums from the labeled rows (g = group index per labeled row)."""
    size = group_ids.size
    predictions = np.bincount(g_all, minlength=size).tolist()
    entropy_sum = _sum(g_all, entropies, size).tolist()
    labeled = np.bincount(g, minlength=size).tolist()
    weight = _sum(g, w, size)
    loss = _sum(g, w * losses, size)
    # Centre on each group's own mean: the two-pass stderr, free of cancellation.
    shift = np.divide(loss, weight, out=np.zeros(size), where=weight > 0.0)
    w2 = w * w
    dev = losses - shift[g]
    loss_w2 = _sum(g, w2 * dev, size).tolist()
    spread = w * dev
    loss_sq_w2 = _sum(g, spread * spread, size).tolist()
    weight_sq = _sum(g, w2, size).tolist()
    # Zeros in place of the rows outside a sum keep each sum's additions in row order
    # (x + 0.0 = x), so a group whose rows all are one class sums its class weight
    # exactly as it sums its total.
    correct_weight = _sum(g, np.where(correct, w, 0.0), size).tolist()
    k = n_classes
    class_key = g * k + classes
    class_weight = _sum(class_key, w, size * k).reshape(size, k).tolist()
    class_loss = _sum(class_key, w * losses, size * k).reshape(size, k).tolist()
    nb = DEFAULT_BINS
    bin_index = np.minimum(np.floor(predicted * nb).astype(np.intp), nb - 1)
    bin_key = g * nb + bin_index
    bin_count = np.bincount(bin_key, minlength=size * nb).reshape(size, nb).tolist()
    bin_weight = _sum(bin_key, w, size * nb).reshape(size, nb).tolist()
    bin_predicted = _sum(bin_key, w * predicted, size * nb).reshape(size, nb).tolist()
    bin_outcome = _sum(bin_key, w * outcome, size * nb).reshape(size, nb).tolist()

    # Each group's loss values (for its exact quantiles), in original row order.
    order = np.argsort(g, kind="stable")
    bounds = np.searchsorted(g[order], np.arange(size + 1), side="left").tolist()
    sorted_losses = losses[order]
    sorted_w = w[order]
    weight_list = weight.tolist()
    loss_list = loss.tolist()
    shift_list = shift.tolist()

    out: dict[int, WindowSums] = {}
    for i, key in enumerate(group_ids.tolist()):
        lo, hi = bounds[i], bounds[i + 1]
        out[int(key)] = WindowSums(
            task=task,
            predictions=predictions[i],
            entropy_sum=entropy_sum[i],
            labeled=labeled[i],
            weight_sum=weight_list[i],
            weight_sq_sum=weight_sq[i],
            loss_sum=loss_list[i],
            loss_shift=shift_list[i],
            loss_w2_sum=loss_w2[i],
            loss_sq_w2_sum=loss_sq_w2[i],
            correct_weight=correct_weight[i],
            class_weight=tuple(class_weight[i]),
            class_loss_sum=tuple(class_loss[i]),
            bin_count=tuple(bin_count[i]),
            bin_weight=tuple(bin_weight[i]),
            bin_predicted=tuple(bin_predicted[i]),
            bin_outcome=tuple(bin_outcome[i]),
            loss_values=sorted_losses[lo:hi],
            loss_weights=sorted_w[lo:hi],
        )
    return out


def binary_sums_by_group(
    group_keys: npt.ArrayLike,
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike,
    eps: float = DEFAULT_EPS,
) -> dict[int, WindowSums]:
    """WindowSums per distinct integer key of binary rows.

    ``labels`` is NaN where a prediction has no actual yet, else 0.0 / 1.0; ``weights``
    is ignored on those unlabeled rows.
    """
    keys = check_group_keys(group_keys)
    s, y_all, w_all = check_binary(scores, labels, weights)
    if keys.shape != s.shape:
        raise ValueError("group_keys must have the same length as scores")
    p_all = clip(s, eps)
    group_ids, g_all = np.unique(keys, return_inverse=True)
    mask = ~np.isnan(y_all)
    y = y_all[mask]
    w = w_all[mask]
    if not ((y == 0.0) | (y == 1.0)).all():
        raise ValueError("labels must be 0.0, 1.0 or NaN")
    _check_weights(w)
    p = p_all[mask]
    positive = y == 1.0
    return _assemble(
        task=BINARY,
        group_ids=group_ids,
        g_all=g_all.astype(np.intp, copy=False),
        # Uses every prediction: it needs no label, so it is known before actuals land.
        entropies=binary_entropy(p_all),
        g=g_all[mask].astype(np.intp, copy=False),
        w=w,
        losses=binary_losses(p, y, eps),
        classes=positive.astype(np.intp),
        n_classes=2,
        correct=(p >= 0.5) == positive,
        # The raw score, not the clipped one: clipping exists only to keep the log
        # finite, while the reliability table should show what the model said.
        predicted=s[mask],
        outcome=y,
    )


def multiclass_sums_by_group(
    group_keys: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike,
    eps: float = DEFAULT_EPS,
) -> dict[int, WindowSums]:
    """WindowSums per distinct integer key of multiclass rows.

    ``probabilities`` is (n, K); ``labels`` is NaN where a prediction has no actual
    yet, else the class index as a float.
    """
    keys = check_group_keys(group_keys)
    p_all, y_all, w_all = check_multiclass(probabilities, labels, weights)
    if keys.shape[0] != p_all.shape[0]:
        raise ValueError("group_keys must have one entry per probability row")
    n_classes = p_all.shape[1]
    group_ids, g_all = np.unique(keys, return_inverse=True)
    mask = ~np.isnan(y_all)
    y = class_indexes(y_all[mask], n_classes)
    w = w_all[mask]
    _check_weights(w)
    p = p_all[mask]
    # Raw probabilities: clipping could tie classes that the model told apart.
    top = np.argmax(p, axis=1)
    correct = top == y
    return _assemble(
        task=MULTICLASS,
        group_ids=group_ids,
        g_all=g_all.astype(np.intp, copy=False),
        entropies=categorical_entropies(p_all, eps),
        g=g_all[mask].astype(np.intp, copy=False),
        w=w,
        losses=multiclass_losses(p, y, eps),
        classes=y,
        n_classes=n_classes,
        correct=correct,
        # Top-label calibration: does the confidence in its pick match how often the
        # pick is right?
        predicted=p[np.arange(p.shape[0]), top],
        outcome=correct.astype(np.float64),
    )
