"""Pure rules of retention (API.md "Models: lifecycle"): no I/O, a `now` passed in."""

from __future__ import annotations

DAY_S = 86_400


def horizon_s(*, now_s: int, retention_days: int) -> int:
    """Unix seconds before which raw data is past retention."""
    return now_s - retention_days * DAY_S


def last_expired_window(*, now_s: int, retention_days: int, window_seconds: int) -> int:
    """The latest window start whose window ended at or before the horizon; every window
    starting at or before it is expired. Windows are aligned to epoch multiples."""
    horizon = horizon_s(now_s=now_s, retention_days=retention_days)
    return (horizon - window_seconds) // window_seconds * window_seconds


def window_expired(
    *, window_start: int, now_s: int, retention_days: int | None, window_seconds: int
) -> bool:
    if retention_days is None:
        return False
    return window_start + window_seconds <= horizon_s(now_s=now_s, retention_days=retention_days)


def actual_expired(*, ts_us: int, now_us: int, retention_days: int | None) -> bool:
    """An actual whose own timestamp is older than the horizon (kept only if its
    prediction is stored)."""
    if retention_days is None:
        return False
    return ts_us < now_us - retention_days * DAY_S * 1_000_000
