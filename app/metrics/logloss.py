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


def class_indexes(labels: npt.ArrayLike, n_classes: int) -> npt.NDArray[np.intp]:
    """Labels as row indexes into a probability row, checked to be classes 0..K-1.

    Accepts integer arrays and integer-valued floats (the NaN-free part of a label
    column). The range check matters: a negative label would otherwise index from the
    end of the row and silently score the wrong class.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError("labels must be a 1-D array")
    if not (np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating)):
        raise ValueError("labels must be class indexes (integers or integer-valued floats)")
    # Testing for validity (not invalidity) makes NaN, False under every comparison, fail.
    valid = (y >= 0) & (y < n_classes)
    if np.issubdtype(y.dtype, np.floating):
        valid &= y == np.floor(y)
    if not valid.all():
        raise ValueError(f"labels must be integer class indexes in [0, {n_classes})")
    return y.astype(np.intp)


def multiclass_losses(
    probabilities: npt.ArrayLike, labels: npt.ArrayLike, eps: float = DEFAULT_EPS
) -> FloatArray:
    """Per-row loss −ln(clip(p[i, y_i])) of an (n, K) probability array.

    Rows are not renormalised: the model is charged for exactly what it said about the
    class that happened.
    """
    p = _as_float_array(probabilities)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be a 2-D (n, K) array, got shape {p.shape}")
    y = class_indexes(labels, p.shape[1])
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"probabilities have {p.shape[0]} rows but labels {y.shape[0]}")
    p_true = p[np.arange(p.shape[0]), y]
    return -np.log(clip(p_true, eps))


def categorical_entropies(probabilities: npt.ArrayLike, eps: float = DEFAULT_EPS) -> FloatArray:
    """Per-row −Σ_k c_k ln c_k of the clipped rows c = clip(p).

    The log loss each row expects of itself if calibrated; for K = 2 it is the binary
    entropy of the clipped score. Clipping also keeps 0 ln 0 out.
    """
    c = clip(probabilities, eps)
    if c.ndim != 2:
        raise ValueError(f"probabilities must be a 2-D (n, K) array, got shape {c.shape}")
    entropies: FloatArray = -(c * np.log(c)).sum(axis=1)
    return entropies
