"""Pure retry decisions for webhook delivery: delays, Retry-After, outcome classes."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

Outcome = Literal["delivered", "retry", "fail", "gone"]

# 2**64 * base already exceeds any sane cap; bounding the exponent avoids OverflowError.
_MAX_EXPONENT = 64


def next_delay(attempts: int, *, base_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait after `attempts` attempts: full jitter, uniform(0, min(max, base·2^(n−1))).

    Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter") spreads the
    retries of many deliveries that failed together, e.g. when one receiver was down.
    """
    exponent = min(max(attempts - 1, 0), _MAX_EXPONENT)
    ceiling = min(max_s, base_s * 2.0**exponent)
    return rng.uniform(0.0, ceiling)


def retry_after_seconds(header_value: str | None, now: datetime) -> float | None:
    """Seconds a Retry-After header asks us to wait (RFC 9110 §10.2.3), or None.

    Accepts delta-seconds and HTTP-date; a date in the past means 0.
    """
    if header_value is None:
        return None
    value = header_value.strip()
    if not value:
        return None
    if value.isascii() and value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # HTTP-dates are GMT; parsedate_to_datetime returns naive for "-0000".
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def classify(status_code: int | None, error: str | None) -> Outcome:
    """What one attempt's result means for the delivery.

    No status (timeout, refused connection, TLS error): retry. 2xx: delivered.
    408, 429, 5xx: retry. 410: gone, the receiver asks us to stop for good. Anything
    else (other 4xx; 3xx since redirects are not followed) will not get better by
    resending the same request: fail.
    """
    if status_code is None:
        return "retry"
    if 200 <= status_code < 300:
        return "delivered"
    if status_code == 410:
        return "gone"
    if status_code in (408, 429) or status_code >= 500:
        return "retry"
    return "fail"
