"""Which event timestamps lossmon accepts (API.md "Time bounds and faults").

Prediction and actual timestamps must lie in [1970-01-01T00:00:00Z, now + max_future].
Outside it, windows would be dated in year 0 or 10000 (not RFC 3339 any more), and one
prediction dated in 2099 would become the model's "latest window" for decades.
Pure: the caller passes the clock and the bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from app.errors import item_error
from app.ingestion.timestamps import Int64s
from app.windows.history_json import iso_seconds

EARLIEST_US = 0  # 1970-01-01T00:00:00Z
EARLIEST_TEXT = "1970-01-01T00:00:00Z"


def out_of_range(
    ts_us: Sequence[int | None] | Int64s, *, now_us: int, max_future_s: float
) -> list[dict[str, Any]]:
    """One 422 item (index, field, message) per timestamp outside the accepted range.

    `ts_us[i]` is record i's timestamp in epoch microseconds, None when it sent none
    (it then gets the time received, always in range)."""
    latest_us = now_us + int(max_future_s * 1_000_000)
    if _all_within(ts_us, latest_us):
        return []  # the usual batch: found by min and max, without a loop in Python
    errors = []
    for i, t in enumerate(ts_us.tolist() if isinstance(ts_us, np.ndarray) else ts_us):
        if t is None or EARLIEST_US <= t <= latest_us:
            continue
        if t < EARLIEST_US:
            message = f"timestamp must not be before {EARLIEST_TEXT}"
        else:
            latest = iso_seconds(latest_us // 1_000_000)
            message = (
                f"timestamp must not be more than {max_future_s:g} s after the server's "
                f"time (latest accepted now: {latest}; LOSSMON_MAX_FUTURE_S)"
            )
        errors.append(item_error(i, "timestamp", message))
    return errors


def _all_within(ts_us: Sequence[int | None] | Int64s, latest_us: int) -> bool:
    if len(ts_us) == 0:
        return True
    if isinstance(ts_us, np.ndarray):
        return bool(ts_us.min() >= EARLIEST_US and ts_us.max() <= latest_us)
    try:
        return min(ts_us) >= EARLIEST_US and max(ts_us) <= latest_us  # type: ignore[type-var, operator]
    except TypeError:  # a None among them
        present = [t for t in ts_us if t is not None]
        return not present or (min(present) >= EARLIEST_US and max(present) <= latest_us)
