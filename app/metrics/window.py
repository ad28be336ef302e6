"""All metrics of one (or many) binary windows, from the window's raw prediction rows.

Computed as mergeable statistics (app.metrics.row_sums) and finalised by the one
definition in app.metrics.window_stats.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from app.metrics.logloss import DEFAULT_EPS
from app.metrics.published import WindowStats, unscored
from app.metrics.row_sums import binary_sums_by_group, check_binary
from app.metrics.window_stats import finalise

__all__ = ["WindowStats", "binary_window_stats", "stats_by_group", "unscored"]


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
    s, y, w = check_binary(scores, labels, weights)
    if s.size == 0:
        return unscored(0, 0, 0.0, None)
    sums = binary_sums_by_group(np.zeros(s.size, dtype=np.int64), s, y, w, eps)
    return finalise(sums[0])


def stats_by_group(
    group_keys: npt.ArrayLike,
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    weights: npt.ArrayLike,
    eps: float = DEFAULT_EPS,
) -> dict[int, WindowStats]:
    """binary_window_stats for every distinct integer key (e.g. window start epoch).

    Lets many windows be computed from one query result in one vectorised pass.
    """
    sums = binary_sums_by_group(group_keys, scores, labels, weights, eps)
    return {key: finalise(s) for key, s in sums.items()}
