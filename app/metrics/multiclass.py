"""All metrics of one (or many) multiclass windows: the K-class twin of window.py.

A row is a probability per class (an (n, K) array, column k = class k) and its label is
the index of the class that happened. The definitions follow the binary ones with the
label distribution in place of the positive rate; for K = 2 they agree with
binary_window_stats on score = p[:, 1].
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.metrics.logloss import DEFAULT_EPS
from app.metrics.published import WindowStats, unscored
from app.metrics.row_sums import check_multiclass, multiclass_sums_by_group
from app.metrics.window_stats import finalise


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
    p, y, w = check_multiclass(probabilities, labels, weights)
    if p.shape[0] == 0:
        return unscored(0, 0, 0.0, None)
    sums = multiclass_sums_by_group(np.zeros(p.shape[0], dtype=np.int64), p, y, w, eps)
    return finalise(sums[0])


def multiclass_stats_by_group(
    group_keys: npt.ArrayLike,
    probabilities: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike,
    eps: float = DEFAULT_EPS,
) -> dict[int, WindowStats]:
    """multiclass_window_stats for every distinct integer key (e.g. window start)."""
    sums = multiclass_sums_by_group(group_keys, probabilities, labels, weights, eps)
    return {key: finalise(s) for key, s in sums.items()}
