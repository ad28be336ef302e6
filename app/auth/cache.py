"""A per-process cache of API-key lookups, so an ingest request does not pay a database
round trip (and a pool checkout) just to authenticate.

Entries live `ttl_s` (default 2 s): a revoked key stops working within that (README says
"within 5 s"). Only what lets a request through is cached: an existing active key, and
"some key exists" (the API is closed). A key created a moment ago is found on its first
use, and an unknown key is looked up every time (never a stale refusal).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_TTL_S = 2.0
MAX_ENTRIES = 10_000  # distinct valid keys are few; the bound is against surprises


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    scope: str


def _digest(presented: str) -> bytes:
    # Keyed by a digest: the cache never holds a presented secret in clear.
    return hashlib.sha256(presented.encode()).digest()


class KeyCache:
    def __init__(self, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic):
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[bytes, tuple[float, KeyInfo]] = {}
        self._closed_until = float("-inf")  # "an active key exists" is known until then

    def known_closed(self) -> bool:
        """True while "an active key exists" is cached (no load needed)."""
        return self._clock() < self._closed_until

    def any_active(self, load: Callable[[], bool]) -> bool:
        if self.known_closed():
            return True
        active = load()
        if active:
            self._closed_until = self._clock() + self._ttl_s
        return active

    def cached(self, presented: str) -> KeyInfo | None:
        """The cached entry, or None (unknown, expired or never looked up): no load, so
        the event loop can ask without blocking and hop to a thread only on a miss."""
        hit = self._keys.get(_digest(presented))
        return hit[1] if hit is not None and self._clock() < hit[0] else None

    def lookup(self, presented: str, load: Callable[[], KeyInfo | None]) -> KeyInfo | None:
        digest = _digest(presented)
        now = self._clock()
        with self._lock:
            hit = self._keys.get(digest)
        if hit is not None and now < hit[0]:
            return hit[1]
        info = load()
        if info is not None:
            with self._lock:
                if len(self._keys) >= MAX_ENTRIES:
                    self._keys.clear()
                self._keys[digest] = (now + self._ttl_s, info)
        return info
