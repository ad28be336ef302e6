"""Per-API-key rate limiting with the `limits` library (moving window)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.config import Settings


@dataclass
class KeyRateLimiter:
    limiter: MovingWindowRateLimiter
    items: list[RateLimitItem]

    def retry_after(self, key_id: str) -> int | None:
        """Count one request for key_id; None if allowed, else seconds to wait."""
        for item in self.items:
            if not self.limiter.hit(item, "api-key", key_id):
                reset = self.limiter.get_window_stats(item, "api-key", key_id).reset_time
                return max(1, math.ceil(reset - time.time()))
        return None


def from_settings(settings: Settings) -> KeyRateLimiter | None:
    if not settings.rate_limit:
        return None
    storage = storage_from_string(settings.rate_limit_storage_uri)
    return KeyRateLimiter(MovingWindowRateLimiter(storage), parse_many(settings.rate_limit))
