"""Paired comparison of two models scored on the same labeled predictions.

Comparing two windows' log losses side by side mixes model quality with whatever makes
the rows differ; scoring the same rows with both models and averaging the per-row
difference cancels that out. Because the two losses rise and fall together row by row,
the difference's standard error is typically much smaller than either loss's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.metrics.groups import check_group_keys, group_rows
from app.metrics.stats import weighted_stderr

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PairedDifference:
    n: int  # rows scored by both models
    weight_sum: float
    log_loss_a: float | None
    log_loss_b: float | None
    difference: float | None  # L_b − L_a: > 0 means b is worse on these rows
    difference_stderr: float | None  # None when n < 2


def _check_inputs(
    losses_a: npt.ArrayLike, losses_b: npt.ArrayLike, weights: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    a = np.asarray(losses_a, dtype=np.float64)
    b = np.asarray(losses_b, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape or a.shape != w.shape:
        raise ValueError("losses_a, losses_b and weights must be 1-D arrays of the same length")
    # A NaN loss would otherwise pass through every mean unnoticed.
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("losses must be finite")
    if not np.all(np.isfinite(w) & (w >= 0.0)):
        raise ValueError("weights must be finite and non-negative")
    return a, b, w


def paired_difference(
    losses_a: npt.ArrayLike, losses_b: npt.ArrayLike, weights: npt.ArrayLike
) -> PairedDifference:
    """Weighted mean losses of models a and b on the same rows, and their difference.

    Row i is one prediction id scored by both models against the same label.
    difference = Σ w d / Σ w with d_i = ℓ_b,i − ℓ_a,i; its stderr uses the same formula
    as log_loss_stderr.
    """
    a, b, w = _check_inputs(losses_a, losses_b, weights)
    n = int(a.size)
    weight_sum = float(w.sum())
    if n == 0 or weight_sum == 0.0:
        return PairedDifference(
            n=n,
            weight_sum=weight_sum,
            log_loss_a=None,
            log_loss_b=None,
            difference=None,
            difference_stderr=None,
        )
    d = b - a
    difference = float(np.dot(w, d)) / weight_sum
    return PairedDifference(
        n=n,
        weight_sum=weight_sum,
        log_loss_a=float(np.dot(w, a)) / weight_sum,
        log_loss_b=float(np.dot(w, b)) / weight_sum,
        difference=difference,
        difference_stderr=weighted_stderr(d, w, difference),
    )


def paired_by_group(
    group_keys: npt.ArrayLike,
    losses_a: npt.ArrayLike,
    losses_b: npt.ArrayLike,
    weights: npt.ArrayLike,
) -> dict[int, PairedDifference]:
    """paired_difference for every distinct integer key (e.g. window start)."""
    keys = check_group_keys(group_keys)
    a, b, w = _check_inputs(losses_a, losses_b, weights)
    if keys.shape != a.shape:
        raise ValueError("group_keys must have the same length as the losses")
    return {key: paired_difference(a[rows], b[rows], w[rows]) for key, rows in group_rows(keys)}
