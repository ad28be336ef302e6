"""The in-process moving-window limiter (app/api/rate_limit.py), on a fake clock."""

from __future__ import annotations

from limits import parse_many

from app.api.rate_limit import InProcessRateLimiter


def test_moving_window_refuses_over_budget_and_frees_as_hits_age() -> None:
    now = [0.0]
    limiter = InProcessRateLimiter(parse_many("3/minute"), clock=lambda: now[0])
    assert [limiter.retry_after("k") for _ in range(3)] == [None, None, None]
    now[0] = 20.0
    assert limiter.retry_after("k") == 40  # the first hit leaves the window at 60 s
    assert limiter.retry_after("other") is None  # per key
    now[0] = 60.0
    assert limiter.retry_after("k") is None  # the hits at 0 s left; this one counts
    assert limiter.retry_after("k") is None
    assert limiter.retry_after("k") is None
    assert limiter.retry_after("k") == 60  # three hits at 60 s fill the window


def test_a_refused_request_costs_no_budget_of_any_limit() -> None:
    now = [0.0]
    limiter = InProcessRateLimiter(parse_many("2/second;3/minute"), clock=lambda: now[0])
    assert limiter.retry_after("k") is None
    assert limiter.retry_after("k") is None
    assert limiter.retry_after("k") == 1  # the per-second limit refuses
    now[0] = 1.5
    assert limiter.retry_after("k") is None  # 3rd hit of the minute: the refusal did not count
    assert limiter.retry_after("k") == 59  # the minute is full: wait for the hit at 0 s
