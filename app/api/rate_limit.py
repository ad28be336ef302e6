"""Per-API-key rate limiting (moving window). Limits are parsed by the `limits` library;
a shared storage (`LOSSMON_RATE_LIMIT_STORAGE_URI=redis://...`) is `limits`' own, and
the per-process default (`memory://`) is the small limiter below.

Why not `limits`' MemoryStorage for the default: it starts a new expiry thread every
10 ms and prepends each hit to a Python list (an O(n) copy per request, n = hits in the
window); at 500 single-prediction POSTs per second that was ~10% of the server's CPU
(py-spy, bench/ingest_single.py). A deque per key and limit does the same moving window
in O(1) per hit, without threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.config import Settings


class RateLimiter(Protocol):
    # True when retry_after does network I/O (a shared storage): the caller then runs it
    # off the event loop, where a slow Redis would stall every request, /healthz included.
    blocking: ClassVar[bool]

    def retry_after(self, key_id: str) -> int | None:
        """Count one request for key_id; None if allowed, else seconds to wait."""


@dataclass
class KeyRateLimiter:
    """`limits` with a (shared) storage."""

    blocking: ClassVar[bool] = True  # a round trip to the storage per hit
    limiter: MovingWindowRateLimiter
    items: list[RateLimitItem]

    def retry_after(self, key_id: str) -> int | None:
        for item in self.items:
            if not self.limiter.hit(item, "api-key", key_id):
                reset = self.limiter.get_window_stats(item, "api-key", key_id).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None


def moving_window_wait(hits: deque[float], *, now: float, amount: int, seconds: float) -> float:
    """Drop hits older than the window from `hits` (oldest first); 0.0 if one more hit
    fits (the caller records it), else the seconds until the oldest leaves the window."""
    while hits and hits[0] <= now - seconds:
        hits.popleft()
    if len(hits) < amount:
        return 0.0
    return hits[0] + seconds - now


@dataclass
class InProcessRateLimiter:
    """Moving window per key and limit, in this process (like `limits` with memory://).
    A hit is recorded only when every limit lets it through (a refused request costs
    no budget)."""

    blocking: ClassVar[bool] = False  # microseconds, in memory
    items: list[RateLimitItem]
    clock: Callable[[], float] = time.monotonic
    _hits: dict[tuple[str, int], deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, key_id: str) -> int | None:
        now = self.clock()
        with self._lock:
            windows = []
            for i, item in enumerate(self.items):
                hits = self._hits.setdefault((key_id, i), deque())
                wait = moving_window_wait(
                    hits, now=now, amount=item.amount, seconds=item.get_expiry()
                )
                if wait > 0:
                    return max(1, math.ceil(wait))
                windows.append(hits)
            for hits in windows:
                hits.append(now)
        return None


def from_settings(settings: Settings) -> RateLimiter | None:
    if not settings.rate_limit:
        return None
    items = parse_many(settings.rate_limit)
    if settings.rate_limit_storage_uri.startswith("memory://"):
        return InProcessRateLimiter(items)
    storage = storage_from_string(settings.rate_limit_storage_uri)
    return KeyRateLimiter(MovingWindowRateLimiter(storage), items)
