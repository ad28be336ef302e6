"""Spread and quantiles of weighted per-row losses.

The mean log loss is dominated by a few confidently wrong rows on skewed data, so the
median / p90 and a standard error are reported alongside it.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

# Integer cumulative sums are exact in float64 only up to 2**53.
_EXACT_INTEGER_LIMIT = float(2**53)
_MACHINE_EPS = float(np.finfo(np.float64).eps)


def weighted_stderr(losses: npt.ArrayLike, weights: npt.ArrayLike, mean: float) -> float | None:
    """sqrt(n/(n-1) * sum w_i^2 (l_i - L)^2) / sum w_i; None when n < 2.

    For unit weights this is the familiar s / sqrt(n).
    """
    loss = np.asarray(losses, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if loss.shape != w.shape or loss.ndim != 1:
        raise ValueError("losses and weights must be 1-D arrays of the same length")
    n = loss.size
    if n < 2:
        return None
    total = float(w.sum())
    if not total > 0.0:
        raise ValueError("weights must have a positive sum")
    dev = w * (loss - mean)
    return math.sqrt(n / (n - 1) * float(np.dot(dev, dev))) / total


def _validate(values: npt.ArrayLike, weights: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if v.shape != w.shape or v.ndim != 1:
        raise ValueError("values and weights must be 1-D arrays of the same length")
    if v.size == 0:
        raise ValueError("quantile of an empty array")
    if not (np.isfinite(w) & (w >= 0.0)).all():
        raise ValueError("weights must be finite and non-negative")
    return v, w


def weighted_quantiles(
    values: npt.ArrayLike, weights: npt.ArrayLike, qs: npt.ArrayLike
) -> FloatArray:
    """For each q, the smallest value whose cumulative weight (rows sorted by value)
    reaches q * sum(w).

    With unit weights this is exactly numpy's ``method="inverted_cdf"``.
    """
    v, w = _validate(values, weights)
    q = np.asarray(qs, dtype=np.float64)
    if not ((q >= 0.0) & (q <= 1.0)).all():
        raise ValueError("quantile levels must lie in [0, 1]")

    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    # Taking the total from the cumsum itself (not a separate, differently-ordered sum)
    # guarantees q = 1 lands on the last row.
    total = float(cum[-1])
    if not total > 0.0:
        raise ValueError("weights must have a positive sum")
    target = q * total

    if (w == np.floor(w)).all() and total <= _EXACT_INTEGER_LIMIT:
        # Integer weights accumulate without rounding, so an exact comparison is both
        # correct and identical to numpy's inverted_cdf (which also compares against
        # the rounded product n * q); any slack here would break that equality.
        slack = 0.0
    else:
        # Fractional weights pick up rounding in the cumsum (a "0.1 * 5 reaches 0.5"
        # boundary may come out a few ulps short), which would skip to the next row.
        # The slack covers the forward error bound of recursive summation, once for the
        # partial sum and once for the total that the target is scaled from.
        slack = 2.0 * v.size * _MACHINE_EPS * total

    idx = np.searchsorted(cum, target - slack, side="left")
    # q <= 1 keeps the target within the cumsum, so this only guards against misuse.
    idx = np.minimum(idx, v.size - 1)
    return v[order][idx]


def weighted_quantile(values: npt.ArrayLike, weights: npt.ArrayLike, q: float) -> float:
    """Single-level form of :func:`weighted_quantiles`."""
    return float(weighted_quantiles(values, weights, np.array([q], dtype=np.float64))[0])
