"""Per-row binary log loss on clipped probabilities.

Clipping follows the MinMax rule (p -> min(max(p, eps), 1 - eps)) so that a confident
wrong prediction (p = 0 or 1) costs a large but finite loss instead of infinity, which
would otherwise poison every mean it takes part in.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

DEFAULT_EPS = 1e-15

FloatArray = npt.NDArray[np.float64]


def _as_float_array(values: npt.ArrayLike) -> FloatArray:
    return np.asarray(values, dtype=np.float64)


def clip(p: npt.ArrayLike, eps: float = DEFAULT_EPS) -> FloatArray:
    """Clip probabilities into [eps, 1 - eps]."""
    # eps = 0 would let ln(0) through; eps >= 0.5 would collapse every score to 0.5.
    if not 0.0 < eps < 0.5:
        raise ValueError(f"eps must be in (0, 0.5), got {eps!r}")
    return np.minimum(np.maximum(_as_float_array(p), eps), 1.0 - eps)


def binary_losses(
    scores: npt.ArrayLike, labels: npt.ArrayLike, eps: float = DEFAULT_EPS
) -> FloatArray:
    """Per-row loss -[y ln p + (1 - y) ln(1 - p)] on clipped p."""
    p = clip(scores, eps)
    y = _as_float_array(labels)
    if p.shape != y.shape:
        raise ValueError(f"scores and labels differ in shape: {p.shape} vs {y.shape}")
    # log1p(-p) keeps precision for small p, where 1 - p would round away digits.
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def weighted_log_loss(losses: npt.ArrayLike, weights: npt.ArrayLike) -> float:
    """Weighted mean loss sum(w * l) / sum(w)."""
    loss = _as_float_array(losses)
    w = _as_float_array(weights)
    if loss.shape != w.shape:
        raise ValueError(f"losses and weights differ in shape: {loss.shape} vs {w.shape}")
    total = float(w.sum())
    if not total > 0.0:
        raise ValueError("weights must have a positive sum")
    return float(np.dot(w, loss) / total)


def binary_entropy(p: npt.ArrayLike) -> FloatArray:
    """Elementwise -[p ln p + (1 - p) ln(1 - p)], taking 0 ln 0 = 0."""
    q = _as_float_array(p)
    # Substituting a harmless argument where a factor is 0 keeps log() from producing
    # -inf (and 0 * -inf = nan) while the product is still the wanted 0.
    safe_log_p = np.log(np.where(q > 0.0, q, 1.0))
    safe_log_1mp = np.log1p(-np.where(q < 1.0, q, 0.0))
    # + 0.0 turns the -0.0 of the degenerate cases into 0.0.
    return -(q * safe_log_p + (1.0 - q) * safe_log_1mp) + 0.0
