"""Splitting rows by an integer key, shared by every *_by_group function.

Lets many windows (or slices) be computed from one query result with a single sort.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IndexArray = npt.NDArray[np.intp]


def check_group_keys(group_keys: npt.ArrayLike) -> npt.NDArray[np.integer]:
    keys = np.asarray(group_keys)
    if keys.ndim != 1 or not np.issubdtype(keys.dtype, np.integer):
        raise ValueError("group_keys must be a 1-D integer array")
    return keys


def group_rows(keys: npt.NDArray[np.integer]) -> list[tuple[int, IndexArray]]:
    """(key, row indexes) for every distinct key, keys ascending.

    A stable sort keeps each group's rows in their original order, so every group sees
    exactly the arrays (and summation order) a direct per-group call would.
    """
    if keys.size == 0:
        return []
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    group_ids = sorted_keys[np.concatenate(([0], starts))]
    return [(int(key), rows) for key, rows in zip(group_ids, np.split(order, starts), strict=True)]
