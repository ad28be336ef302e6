"""Which rows form each precomputed slice of a set of windows.

A slice is one model version, or one value of one segment key, within one window. Per
window and dimension only the top N values by predictions get their own slice; the
rest of that dimension's rows form one `other` slice. That bounds the work and the
stored rows per window at (N + 1) x (1 + number of segment keys), whatever the
cardinality a client sends (a user id as a segment would otherwise explode both).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from app.windows.models import SEGMENT, VERSION

__all__ = ["SEGMENT", "VERSION", "Dimension", "SliceGroups", "dimensions", "group"]


@dataclass(frozen=True, slots=True)
class Dimension:
    kind: str  # VERSION or SEGMENT
    key: str  # segment key; "" for versions
    names: list[str]  # value per code
    codes: np.ndarray  # int64 per row, -1 = row has no value in this dimension


@dataclass(frozen=True, slots=True)
class SliceGroups:
    """Rows grouped into (window, value) slices of one dimension."""

    dimension: Dimension
    group_keys: np.ndarray  # int64 per selected row: window_index * (M + 1) + slot
    rows: np.ndarray  # positions of the selected rows
    windows: np.ndarray  # window start per window index
    # slot M is "other"; slots < M are value codes
    other_slot: int

    def decode(self, group: int) -> tuple[int, bool, str]:
        """group key -> (window_start, other, value)."""
        w, slot = divmod(group, self.other_slot + 1)
        if slot == self.other_slot:
            return int(self.windows[w]), True, ""
        return int(self.windows[w]), False, self.dimension.names[slot]


def _encode(values: Sequence[str | None]) -> tuple[list[str | None], np.ndarray]:
    """Distinct values and each row's code.

    set() and map(dict.__getitem__) run their per-row loops in C; a Python-level loop
    per row cost about a second per dimension on a million rows (bench/compute.py).
    """
    distinct = list(set(values))
    if len(distinct) == 1:  # the usual unversioned / unsegmented model
        return distinct, np.zeros(len(values), dtype=np.int64)
    index = {v: i for i, v in enumerate(distinct)}
    codes = np.fromiter(map(index.__getitem__, values), dtype=np.int64, count=len(values))
    return distinct, codes


def dimensions(versions: Sequence[str], segments: Sequence[str | None]) -> Iterator[Dimension]:
    """The version dimension and one dimension per segment key seen in the rows."""
    names, codes = _encode(versions)
    yield Dimension(VERSION, "", [str(n) for n in names], codes)

    texts, text_codes = _encode(segments)
    parsed = [json.loads(t) if t is not None else {} for t in texts]
    keys = sorted({k for d in parsed for k in d})
    for key in keys:
        values = sorted({str(d[key]) for d in parsed if key in d})
        value_code = {v: i for i, v in enumerate(values)}
        # Per distinct segments text, the code of its value for this key (-1: absent).
        lookup = np.array(
            [value_code[str(d[key])] if key in d else -1 for d in parsed], dtype=np.int64
        )
        yield Dimension(SEGMENT, key, values, lookup[text_codes])


def group(
    dimension: Dimension,
    window_starts: np.ndarray,
    top_n: int,
    pinned: frozenset[str] = frozenset(),
) -> SliceGroups:
    """Assign each row that has a value in `dimension` to its window's slice.

    `pinned` values (those a monitor watches) always get their own slice."""
    present = np.flatnonzero(dimension.codes >= 0)
    windows, w_index = np.unique(window_starts[present], return_inverse=True)
    codes = dimension.codes[present]
    m = len(dimension.names)
    # Sorted name rank breaks count ties, so the chosen top N does not depend on the
    # order rows came back from the database.
    rank = np.empty(m, dtype=np.int64)
    rank[np.argsort(np.array(dimension.names, dtype=object), kind="stable")] = np.arange(m)
    pair = w_index.astype(np.int64) * m + codes
    pairs, inverse, counts = np.unique(pair, return_inverse=True, return_counts=True)
    pair_window = pairs // m
    pair_code = pairs % m
    order = np.lexsort((rank[pair_code], -counts, pair_window))
    first_of_window = np.searchsorted(pair_window[order], pair_window[order], side="left")
    position = np.arange(order.size) - first_of_window
    kept = np.empty(pairs.size, dtype=bool)
    kept[order] = position < top_n
    if pinned:
        is_pinned = np.array([n in pinned for n in dimension.names], dtype=bool)
        kept |= is_pinned[pair_code]
    slot = np.where(kept[inverse], codes, m)
    return SliceGroups(
        dimension=dimension,
        group_keys=w_index.astype(np.int64) * (m + 1) + slot,
        rows=present,
        windows=windows,
        other_slot=m,
    )
