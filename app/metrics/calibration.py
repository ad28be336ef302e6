"""Reliability table and expected calibration error (ECE).

Log loss mixes two failures: ranking rows badly and stating the wrong confidence. The
reliability table separates out the second: within each band of predicted probability it
compares the mean prediction with the observed outcome rate, and ECE is the
weight-averaged size of that mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

DEFAULT_BINS = 10


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    lower: float  # k / bins
    upper: float  # (k + 1) / bins; the last bin also holds p = 1.0
    count: int  # rows in the bin
    weight: float  # sum of their weights
    # Weighted means over the bin; None when the bin has no row (or only zero weights,
    # where the mean is 0 / 0).
    mean_predicted: float | None
    observed_rate: float | None


def _check_inputs(
    predicted: npt.ArrayLike, outcome: npt.ArrayLike, weights: npt.ArrayLike, bins: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    p = np.asarray(predicted, dtype=np.float64)
    y = np.asarray(outcome, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if p.ndim != 1 or p.shape != y.shape or p.shape != w.shape:
        raise ValueError("predicted, outcome and weights must be 1-D arrays of the same length")
    # bool is an int subclass, but "bins=True" is surely a mistake.
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 1:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    # The negated form also rejects NaN, which every comparison answers with False.
    # ndarray.all() rather than np.all(): the wrapper's overhead shows on small windows.
    if not ((p >= 0.0) & (p <= 1.0)).all():
        raise ValueError("predicted must be probabilities in [0, 1]")
    if not ((y >= 0.0) & (y <= 1.0)).all():
        raise ValueError("outcome must lie in [0, 1]")
    if not (np.isfinite(w) & (w >= 0.0)).all():
        raise ValueError("weights must be finite and non-negative")
    return p, y, w


def reliability_table(
    predicted: npt.ArrayLike,
    outcome: npt.ArrayLike,
    weights: npt.ArrayLike,
    bins: int = DEFAULT_BINS,
) -> tuple[tuple[ReliabilityBin, ...], float | None]:
    """Equal-width reliability bins over [0, 1] and the ECE they imply.

    Row i goes to bin min(floor(p_i * bins), bins - 1), so p = 1.0 lands in the last bin.
    ECE = Σ_b (W_b / W) |mean_predicted_b − observed_rate_b| over the bins with weight;
    None when there is no row or the total weight W is 0.
    """
    p, y, w = _check_inputs(predicted, outcome, weights, bins)
    nbins = int(bins)
    index = np.minimum(np.floor(p * nbins).astype(np.intp), nbins - 1)

    # One pass per statistic over all rows; bins are then handled as short arrays.
    counts = np.bincount(index, minlength=nbins)
    bin_weight = np.bincount(index, weights=w, minlength=nbins)
    weighted_p = np.bincount(index, weights=w * p, minlength=nbins)
    weighted_y = np.bincount(index, weights=w * y, minlength=nbins)

    filled = bin_weight > 0.0
    # Dividing only where the weight is positive keeps 0 / 0 warnings and NaN out.
    safe_weight = np.where(filled, bin_weight, 1.0)
    mean_p = weighted_p / safe_weight
    rate_y = weighted_y / safe_weight

    # Plain Python lists (tolist) build the 10 bins several times faster than indexing
    # numpy scalars one by one: this runs once per window and per slice (bench/compute.py).
    mean_list = np.where(filled, mean_p, np.nan).tolist()
    rate_list = np.where(filled, rate_y, np.nan).tolist()
    table = tuple(
        ReliabilityBin(
            lower=k / nbins,
            upper=(k + 1) / nbins,
            count=c,
            weight=wt,
            mean_predicted=mp if f else None,
            observed_rate=r if f else None,
        )
        for k, (c, wt, mp, r, f) in enumerate(
            zip(
                counts.tolist(),
                bin_weight.tolist(),
                mean_list,
                rate_list,
                filled.tolist(),
                strict=True,
            )
        )
    )

    total = float(w.sum())
    if p.size == 0 or total == 0.0:
        return table, None
    gaps = np.abs(mean_p[filled] - rate_y[filled])
    ece = float(np.dot(bin_weight[filled], gaps)) / total
    return table, ece
