"""Pure retry decisions, and writing to the outbox."""

from __future__ import annotations

import json
import random
import re
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import select

from app.db import session_scope
from app.notify.backoff import classify, next_delay, retry_after_seconds
from app.notify.models import WebhookDelivery
from app.notify.outbox import enqueue, from_us, to_us
from tests.notify.conftest import Hooks

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def test_next_delay_is_full_jitter_capped() -> None:
    rng = random.Random(7)
    for attempts in range(1, 30):
        ceiling = min(60.0, 2.0 * 2 ** (attempts - 1))
        delays = [next_delay(attempts, base_s=2.0, max_s=60.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > 0.8 * ceiling  # spread over the whole range
    assert next_delay(10_000, base_s=2.0, max_s=60.0, rng=rng) <= 60.0  # no overflow


def test_next_delay_is_deterministic_with_a_seeded_rng() -> None:
    a = [next_delay(n, base_s=1, max_s=30, rng=random.Random(1)) for n in range(1, 8)]
    b = [next_delay(n, base_s=1, max_s=30, rng=random.Random(1)) for n in range(1, 8)]
    assert a == b


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        ("Tue, 24 Nov 2026 12:01:00 GMT", 60.0),
        ("Tue, 24 Nov 2026 11:00:00 GMT", 0.0),  # in the past
    ],
)
def test_retry_after(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, NOW) == expected


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (200, None, "delivered"),
        (204, None, "delivered"),
        (299, None, "delivered"),
        (None, "ConnectError: refused", "retry"),
        (None, "ReadTimeout", "retry"),
        (408, None, "retry"),
        (429, None, "retry"),
        (500, None, "retry"),
        (503, None, "retry"),
        (410, None, "gone"),
        (400, None, "fail"),
        (401, None, "fail"),
        (404, None, "fail"),
        (413, None, "fail"),
        (301, None, "fail"),
        (302, None, "fail"),
        (307, None, "fail"),
    ],
)
def test_classify(status: int | None, error: str | None, expected: str) -> None:
    assert classify(status, error) == expected


def test_microsecond_conversion_is_exact() -> None:
    when = datetime(2026, 11, 24, 12, 0, 0, 999_999, tzinfo=UTC)
    assert from_us(to_us(when)) == when
    with pytest.raises(ValueError):
        to_us(when.replace(tzinfo=None))


def test_enqueue_stores_exact_body_once(hooks: Hooks) -> None:
    payload = {"type": "alert.firing", "z": 1, "a": [1.5, None], "note": "ŀöß ✓"}
    delivery_id = hooks.add(payload, at=NOW)
    row = hooks.row(delivery_id)

    assert re.fullmatch(r"msg_[0-9a-f]{32}", row.id)
    # Compact, key order kept, non-ASCII as is.
    assert row.body == '{"type":"alert.firing","z":1,"a":[1.5,null],"note":"ŀöß ✓"}'
    assert json.loads(row.body) == payload
    assert (row.status, row.attempts, row.event_type) == ("pending", 0, "alert.firing")
    assert row.next_attempt_us == to_us(NOW)
    assert row.created_at == NOW
    assert row.url == hooks.receiver.url
    assert row.secret_enc is not None and hooks.secret not in row.secret_enc


def test_enqueue_only_flushes(hooks: Hooks) -> None:
    hooks.add()  # creates an alert we can reuse
    with session_scope(hooks.db.factory) as s:
        alert_id = s.scalars(select(WebhookDelivery.alert_id)).one()
    session = hooks.db.factory()
    try:
        d = enqueue(
            session=session,
            alert_id=alert_id,
            monitor_id=hooks.monitor_id,
            event_type="alert.resolved",
            payload={"type": "alert.resolved"},
            url=hooks.receiver.url,
            secret_enc=None,
            now=NOW,
        )
        assert session.get(WebhookDelivery, d.id) is d
        session.rollback()  # the caller's transaction decides
    finally:
        session.close()
    assert hooks.db.count("webhook_deliveries") == 1
