"""The delivery job against a real loopback receiver, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.db import session_scope
from app.notify.delivery import DeliveryReport, claim_due, deliver_due
from app.notify.outbox import to_us
from tests.conftest import Db
from tests.notify.conftest import FakeClock, Hooks, make_hooks
from tests.notify.receiver import Received, Receiver


def verify(secret: str, request: Received) -> object:
    return Webhook(secret).verify(request.body, request.headers)


def test_delivers_signed_verifiable_body(hooks: Hooks) -> None:
    payload = {"type": "alert.firing", "model_id": "ctr", "note": "logloss ↑ naïve", "n": 1.5}
    ids = [hooks.add(payload), hooks.add()]

    report = hooks.run()

    assert report == DeliveryReport(sent=2, delivered=2)
    received = hooks.receiver.received
    assert sorted(r.headers["webhook-id"] for r in received) == sorted(ids)
    for request in received:
        row = hooks.row(request.headers["webhook-id"])
        assert request.body == row.body.encode("utf-8")  # exactly the stored text
        assert request.headers["content-type"] == "application/json"
        assert request.headers["webhook-timestamp"] == str(int(hooks.clock.t))
        assert verify(hooks.secret, request) == json.loads(row.body)
        with pytest.raises(WebhookVerificationError):
            Webhook(hooks.secret).verify(request.body + b" ", request.headers)
        with pytest.raises(WebhookVerificationError):
            Webhook(hooks.secret).verify(request.body.replace(b"1", b"2"), request.headers)
        assert row.status == "delivered"
        assert row.attempts == 1
        assert row.last_status_code == 200
        assert row.last_error is None
        assert row.delivered_at is not None
    first = next(r for r in received if r.headers["webhook-id"] == ids[0])
    assert json.loads(first.body) == payload
    assert "naïve".encode() in first.body  # ensure_ascii=False: sent as UTF-8

    assert hooks.run() == DeliveryReport()  # nothing due any more
    assert len(received) == 2


def test_receiver_down_then_back_retries_same_id_and_body(hooks: Hooks) -> None:
    delivery_id = hooks.add()
    hooks.receiver.stop()  # connection refused

    report = hooks.run()
    row = hooks.row(delivery_id)
    assert report == DeliveryReport(sent=1, retried=1)
    assert (row.status, row.attempts, row.last_status_code) == ("pending", 1, None)
    assert row.last_error is not None and "ConnectError" in row.last_error
    assert "127.0.0.1" not in row.last_error  # the URL is redacted from errors

    hooks.receiver.start()
    hooks.receiver.reply(500, 500)  # then the default 200
    for attempt in (2, 3):
        assert hooks.run() == DeliveryReport()  # not yet due: backoff is respected
        hooks.advance_past_next_attempt(delivery_id)
        assert hooks.run() == DeliveryReport(sent=1, retried=1)
        row = hooks.row(delivery_id)
        assert (row.status, row.attempts, row.last_status_code) == ("pending", attempt, 500)
        assert row.last_error == "HTTP 500"

    hooks.advance_past_next_attempt(delivery_id)
    assert hooks.run() == DeliveryReport(sent=1, delivered=1)
    row = hooks.row(delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("delivered", 4, 200)

    received = hooks.receiver.received
    assert len(received) == 3
    assert {r.headers["webhook-id"] for r in received} == {delivery_id}
    assert {r.body for r in received} == {row.body.encode()}
    for request in received:
        verify(hooks.secret, request)


def test_client_error_is_not_retried(hooks: Hooks) -> None:
    delivery_id = hooks.add()
    hooks.receiver.reply(400)

    assert hooks.run() == DeliveryReport(sent=1, failed=1)
    row = hooks.row(delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("dead", 1, 400)
    assert row.last_error is not None and "not retried" in row.last_error

    hooks.clock.advance(120)
    assert hooks.run() == DeliveryReport()
    assert len(hooks.receiver.received) == 1


def test_redirect_is_not_followed(hooks: Hooks) -> None:
    delivery_id = hooks.add()
    hooks.receiver.reply((302, {"Location": hooks.receiver.url + "/elsewhere"}))

    assert hooks.run() == DeliveryReport(sent=1, failed=1)
    row = hooks.row(delivery_id)
    assert (row.status, row.last_status_code) == ("dead", 302)
    assert row.last_error is not None and "redirects are not followed" in row.last_error
    assert [r.path for r in hooks.receiver.received] == ["/hook"]


def test_gone_disables_monitor_and_cancels_its_pending(hooks: Hooks) -> None:
    ids = [hooks.add() for _ in range(3)]
    # Same URL but another monitor, not yet due: must be left alone.
    hooks.add_monitor("mon_2", hooks.receiver.url)
    later = hooks.clock.now.replace(year=hooks.clock.now.year + 1)
    other = hooks.add(monitor_id="mon_2", at=later)
    hooks.receiver.reply(410)

    report = hooks.run(limit=1)

    assert report == DeliveryReport(sent=1, failed=1)
    assert len(hooks.receiver.received) == 1
    gone_id = hooks.receiver.received[0].headers["webhook-id"]
    statuses = {i: hooks.row(i).status for i in ids}
    assert statuses.pop(gone_id) == "dead"
    assert set(statuses.values()) == {"cancelled"}
    assert hooks.row(gone_id).last_status_code == 410
    assert hooks.monitor().webhook_disabled_at == hooks.clock.now
    assert hooks.monitor("mon_2").webhook_disabled_at is None
    assert hooks.row(other).status == "pending"


def test_gone_after_url_change_does_not_disable_new_url(hooks: Hooks) -> None:
    delivery_id = hooks.add()
    with session_scope(hooks.db.factory) as s:
        monitor = s.get(type(hooks.monitor()), hooks.monitor_id)
        assert monitor is not None
        monitor.webhook_url = "https://new.example/hook"
    hooks.receiver.reply(410)

    assert hooks.run() == DeliveryReport(sent=1, failed=1)
    assert hooks.row(delivery_id).status == "dead"
    assert hooks.monitor().webhook_disabled_at is None


def test_429_honours_retry_after(hooks: Hooks) -> None:
    delivery_id = hooks.add()
    hooks.receiver.reply((429, {"Retry-After": "120"}))

    assert hooks.run() == DeliveryReport(sent=1, retried=1)
    row = hooks.row(delivery_id)
    assert (row.status, row.last_status_code) == ("pending", 429)
    # The injected backoff (base 0.5 s) alone would be far shorter.
    assert row.next_attempt_us >= to_us(hooks.clock.now) + 120_000_000

    hooks.clock.advance(119)
    assert hooks.run() == DeliveryReport()
    hooks.advance_past_next_attempt(delivery_id)
    assert hooks.run() == DeliveryReport(sent=1, delivered=1)


def test_max_attempts_then_dead(hooks: Hooks) -> None:
    hooks.configure(webhook_max_attempts=3)
    delivery_id = hooks.add()
    hooks.receiver.default = 503

    reports = [hooks.run()]
    for _ in range(2):
        hooks.advance_past_next_attempt(delivery_id)
        reports.append(hooks.run())

    assert reports == [DeliveryReport(sent=1, retried=1)] * 2 + [DeliveryReport(sent=1, dead=1)]
    row = hooks.row(delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == ("dead", 3, 503)
    assert row.last_error == "gave up after 3 attempts: HTTP 503"
    hooks.clock.advance(60)
    assert hooks.run() == DeliveryReport()
    assert len(hooks.receiver.received) == 3


def test_max_age_then_dead_without_sending(hooks: Hooks) -> None:
    hooks.configure(webhook_max_age_s=60)
    delivery_id = hooks.add()
    hooks.receiver.reply(500)
    assert hooks.run() == DeliveryReport(sent=1, retried=1)

    hooks.clock.advance(61)
    assert hooks.run() == DeliveryReport(dead=1)
    row = hooks.row(delivery_id)
    assert row.status == "dead"
    assert row.last_error is not None and "older than 60s" in row.last_error
    assert len(hooks.receiver.received) == 1


def test_retry_after_beyond_max_age_gives_up(hooks: Hooks) -> None:
    hooks.configure(webhook_max_age_s=60)
    delivery_id = hooks.add()
    hooks.receiver.reply((503, {"Retry-After": "3600"}))

    assert hooks.run() == DeliveryReport(sent=1, dead=1)
    row = hooks.row(delivery_id)
    assert row.status == "dead"
    assert row.last_error is not None and "maximum age" in row.last_error


def test_crash_between_claim_and_send_resends_once(hooks: Hooks) -> None:
    delivery_id = hooks.add()
    with session_scope(hooks.db.factory) as session:
        claim = claim_due(
            session=session,
            settings=hooks.settings,
            now_us=to_us(hooks.clock.now),
            rng=hooks.rng,
            limit=10,
        )
    assert [d.id for d in claim.deliveries] == [delivery_id]
    # ... and the worker dies here, before sending.

    row = hooks.row(delivery_id)
    assert (row.status, row.attempts) == ("pending", 1)
    # Scheduled at least one send timeout ahead: nobody else takes it meanwhile.
    assert row.next_attempt_us >= to_us(hooks.clock.now) + 2_000_000
    assert hooks.run() == DeliveryReport()

    hooks.advance_past_next_attempt(delivery_id)
    assert hooks.run() == DeliveryReport(sent=1, delivered=1)
    assert [r.headers["webhook-id"] for r in hooks.receiver.received] == [delivery_id]
    row = hooks.row(delivery_id)
    assert (row.status, row.attempts) == ("delivered", 2)


def test_lease_expired_before_send_is_released_unsent(hooks: Hooks) -> None:
    first, second = hooks.add(), hooks.add()

    # The first send takes (in fake time) far longer than the second row's lease.
    def slow(_: Received) -> None:
        hooks.clock.advance(60)

    hooks.receiver.on_request = slow
    report = hooks.run()

    assert report == DeliveryReport(sent=1, delivered=1)
    assert len(hooks.receiver.received) == 1
    sent = hooks.receiver.received[0].headers["webhook-id"]
    released = second if sent == first else first
    row = hooks.row(released)
    assert (row.status, row.attempts) == ("pending", 0)  # the attempt was handed back
    assert row.next_attempt_us <= to_us(hooks.clock.now)

    hooks.receiver.on_request = None
    assert hooks.run() == DeliveryReport(sent=1, delivered=1)
    assert hooks.row(released).attempts == 1


def test_unsafe_url_is_refused_at_send_time(hooks: Hooks) -> None:
    hooks.configure(webhook_allow_private=False)
    delivery_id = hooks.add()

    assert hooks.run() == DeliveryReport(sent=1, failed=1)
    row = hooks.row(delivery_id)
    assert row.status == "dead"
    assert row.last_error is not None and "loopback" in row.last_error
    assert hooks.receiver.received == []


def test_missing_secret_is_not_sent_unsigned(hooks: Hooks) -> None:
    delivery_id = hooks.add(secret_enc=None)

    assert hooks.run() == DeliveryReport(sent=1, failed=1)
    assert hooks.row(delivery_id).status == "dead"
    assert hooks.receiver.received == []


def test_undecryptable_secret_is_retried(hooks: Hooks, db: Db) -> None:
    delivery_id = hooks.add()
    hooks.configure(secret_key="A" * 43 + "=")  # a valid Fernet key, but not the one used

    assert hooks.run() == DeliveryReport(sent=1, retried=1)
    row = hooks.row(delivery_id)
    assert row.status == "pending"
    assert row.last_error is not None and "decrypt" in row.last_error
    assert hooks.receiver.received == []


def test_timeout_is_retried(hooks: Hooks) -> None:
    hooks.configure(webhook_timeout_s=0.2)
    delivery_id = hooks.add()
    hooks.receiver.delay_s = 0.6

    assert hooks.run() == DeliveryReport(sent=1, retried=1)
    row = hooks.row(delivery_id)
    assert row.last_error is not None and "Timeout" in row.last_error
    assert row.last_status_code is None


def test_two_workers_deliver_each_exactly_once(pg_db: Db, receiver: Receiver) -> None:
    hooks = make_hooks(pg_db, receiver, FakeClock())
    ids = {hooks.add() for _ in range(30)}
    hooks.configure(webhook_timeout_s=5.0)
    receiver.delay_s = 0.02
    start = threading.Barrier(2)
    reports: list[DeliveryReport] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            start.wait()
            reports.append(
                deliver_due(
                    factory=pg_db.factory, settings=hooks.settings, clock=time.time, limit=5
                )
            )
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    assert errors == []
    received = [r.headers["webhook-id"] for r in receiver.received]
    assert sorted(received) == sorted(ids)  # every one, none twice
    assert sum(r.delivered for r in reports) == 30
    assert all(r.delivered > 0 for r in reports), reports  # both really worked
    assert {hooks.row(i).status for i in ids} == {"delivered"}
    assert {hooks.row(i).attempts for i in ids} == {1}


def test_one_log_line_per_attempt_without_secrets(
    hooks: Hooks, caplog: pytest.LogCaptureFixture
) -> None:
    delivery_id = hooks.add()
    hooks.receiver.reply(500)
    with caplog.at_level(logging.DEBUG, logger="app.notify"):
        hooks.run()
        hooks.advance_past_next_attempt(delivery_id)
        hooks.run()

    lines = [r.getMessage() for r in caplog.records if r.name.startswith("app.notify")]
    assert len(lines) == 2
    alert_id = hooks.row(delivery_id).alert_id
    assert f"{delivery_id} alert {alert_id} attempt 1: status 500 -> retry" in lines[0]
    assert f"{delivery_id} alert {alert_id} attempt 2: status 200 -> delivered" in lines[1]
    signature = hooks.receiver.received[0].headers["webhook-signature"]
    key_b64 = hooks.secret.removeprefix("whsec_")
    for line in lines:
        assert key_b64 not in line and signature.split(",", 1)[1] not in line
    row = hooks.row(delivery_id)
    assert key_b64 not in (row.last_error or "") and key_b64 not in (row.secret_enc or "")
