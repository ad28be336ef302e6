"""Log loss of the naive no-skill model, i.e. the entropy of the label distribution.

A model that always predicts the window's own base rate q scores exactly this, so it is
the bar a real model has to clear; it depends on the class balance, which is why raw log
loss cannot be compared across windows with different base rates.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt


def baseline_log_loss(positive_rate: float) -> float:
    """-[q ln q + (1 - q) ln(1 - q)]; exactly 0.0 when all labels agree (q in {0, 1})."""
    q = float(positive_rate)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"positive_rate must be in [0, 1], got {positive_rate!r}")
    if q in (0.0, 1.0):
        # Callers test `baseline == 0` to null out skill, so this must be an exact zero.
        return 0.0
    return -(q * math.log(q) + (1.0 - q) * math.log1p(-q))


def categorical_entropy(rates: npt.ArrayLike) -> float:
    """-sum r_k ln r_k over a class distribution, taking 0 ln 0 = 0."""
    r = np.asarray(rates, dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ValueError("rates must be a non-empty 1-D array")
    if not np.all((r >= 0.0) & (r <= 1.0)):
        raise ValueError("rates must lie in [0, 1]")
    if np.count_nonzero(r) <= 1 or np.any(r == 1.0):
        # One certain class: callers test `baseline == 0` to null out skill, so this
        # must be an exact 0.0, as in baseline_log_loss. Counting the non-zero rates
        # catches it even when rounding left that class a hair below 1.0 (its weights
        # summed in a different order than the total); a rate of exactly 1.0 leaves the
        # others nothing but rounding residue.
        return 0.0
    # log(1) = 0 stands in for the 0 ln 0 terms so no -inf/nan appears.
    terms = r * np.log(np.where(r > 0.0, r, 1.0))
    return float(-terms.sum()) + 0.0
