"""One window's metrics as the row dict stored and served (whole model or a slice)."""

from __future__ import annotations

import numpy as np

from app.metrics import WindowStats, multiclass_stats_by_group, stats_by_group
from app.windows.reader import JoinedRows
from app.windows.record import row_values
from app.windows.record import stored_values as metric_values

__all__ = ["compute_stats", "metric_values", "row_values"]


def compute_stats(
    rows: JoinedRows, eps: float, group_keys: np.ndarray | None = None
) -> dict[int, WindowStats]:
    """Stats per group key (default: per window start)."""
    if len(rows) == 0:
        return {}  # (a multiclass read of no rows does not know K)
    keys = rows.window_starts if group_keys is None else group_keys
    if rows.probabilities is not None:
        return multiclass_stats_by_group(keys, rows.probabilities, rows.labels, rows.weights, eps)
    return stats_by_group(keys, rows.scores, rows.labels, rows.weights, eps)
