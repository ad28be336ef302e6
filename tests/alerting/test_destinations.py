"""Alert destinations end to end (HTTP API, scheduler tick, outbox, a real loopback
receiver): the Slack and PagerDuty formats carry the documented shapes, keep the
outbox's retries, and are refused by the SSRF guard like the standard webhook.
(Alertmanager: tests/alerting/test_alertmanager.py, against the real one.)"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import jobs
from tests.alerting.test_lifecycle import BAD, GOOD, post_window, tick
from tests.conftest import Db
from tests.notify.receiver import Receiver

ROUTING_KEY = "R0ut1ngKeyOfThirtyTwoCharacters0"


def monitor(client: TestClient, **extra: Any) -> dict[str, Any]:
    body = {
        "name": "ctr-degrading",
        "rule": {"type": "log_loss_above", "threshold": 0.5},
        "min_labeled": 20,
        "for_windows": 1,
        **extra,
    }
    r = client.post("/v1/models/ctr/monitors", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


def bodies(receiver: Receiver) -> list[Any]:
    return [json.loads(r.body) for r in receiver.received]


def fire_and_resolve(client: TestClient, db: Db, settings: Any) -> list[dict[str, Any]]:
    post_window(client, 0, BAD)
    tick(db, settings)
    post_window(client, 1, GOOD)
    tick(db, settings)
    alerts = client.get("/v1/alerts", params={"model_id": "ctr"}).json()["alerts"]
    assert [a["state"] for a in alerts] == ["resolved"]
    return list(alerts)


def test_slack_message_shape(ctr_env: Any, receiver: Receiver) -> None:
    client, db, settings = ctr_env
    created = monitor(client, webhook_url=receiver.url, webhook_format="slack")
    assert created["webhook_format"] == "slack"
    assert created["webhook_secret"] is None  # nothing to sign with: Slack verifies nothing
    (alert,) = fire_and_resolve(client, db, settings)
    firing, resolved = bodies(receiver)
    for body, state in ((firing, "firing"), (resolved, "resolved")):
        assert set(body) == {"text", "blocks"}
        assert isinstance(body["text"], str) and f"lossmon {state}" in body["text"]
        assert "ctr-degrading" in body["text"] and "ctr" in body["text"]
        section, context = body["blocks"]
        assert section == {"type": "section", "text": {"type": "mrkdwn", "text": body["text"]}}
        assert context["type"] == "context"
        assert context["elements"][0]["type"] == "mrkdwn"
        assert alert["alert_id"] in context["elements"][0]["text"]
    for r in receiver.received:
        assert "webhook-signature" not in r.headers
        assert r.headers["content-type"] == "application/json"


def test_pagerduty_trigger_then_resolve_with_dedup_key(ctr_env: Any, receiver: Receiver) -> None:
    client, db, settings = ctr_env
    # The first trigger is refused once (a 500): retried, at least once, as always.
    receiver.reply(500)
    created = monitor(
        client,
        webhook_url=receiver.url,
        webhook_format="pagerduty",
        routing_key=ROUTING_KEY,
        severity="critical",
    )
    assert created["has_routing_key"] is True
    assert "routing_key" not in created
    post_window(client, 0, BAD)
    tick(db, settings)
    assert len(receiver.received) == 1  # the refused attempt
    deadline = time.monotonic() + 20
    while len(receiver.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.3)
        jobs.deliver_webhooks(settings=settings, factory=db.factory)
    post_window(client, 1, GOOD)
    tick(db, settings)
    (alert,) = client.get("/v1/alerts", params={"model_id": "ctr"}).json()["alerts"]
    sent = bodies(receiver)
    assert [b["event_action"] for b in sent] == ["trigger", "trigger", "resolve"]
    assert sent[0] == sent[1]  # the retry sends the same event
    for body in sent:
        assert body["routing_key"] == ROUTING_KEY
        assert body["dedup_key"] == alert["alert_id"]
        payload = body["payload"]
        assert payload["severity"] == "critical"
        assert payload["source"] == "lossmon/ctr"
        assert isinstance(payload["summary"], str) and 0 < len(payload["summary"]) <= 1024
        assert "ctr-degrading" in payload["summary"]
    # The key is a credential: it is not stored in the outbox rows in clear.
    detail = client.get(f"/v1/alerts/{alert['alert_id']}").json()
    assert [d["status"] for d in detail["deliveries"]] == ["delivered", "delivered"]
    with db.factory() as session:
        from sqlalchemy import text

        stored = session.execute(text("SELECT body, secret_enc FROM webhook_deliveries")).all()
    assert all(ROUTING_KEY not in (body + (enc or "")) for body, enc in stored)


def test_pagerduty_needs_a_routing_key(ctr_env: Any) -> None:
    client, _, _ = ctr_env
    r = client.post(
        "/v1/models/ctr/monitors",
        json={
            "name": "pd",
            "rule": {"type": "log_loss_above", "threshold": 0.5},
            "webhook_format": "pagerduty",
            "webhook_url": "http://127.0.0.1:9/x",
        },
    )
    assert r.status_code == 422
    assert any(e["field"] == "routing_key" for e in r.json()["detail"]), r.text
    ok = monitor(client, name="slack", webhook_format="slack", webhook_url="http://127.0.0.1:9/")
    r = client.put(f"/v1/models/ctr/monitors/{ok['id']}", json={"webhook_format": "pagerduty"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["field"] == "routing_key"


@pytest.mark.parametrize("fmt", ["slack", "pagerduty", "alertmanager"])
def test_every_format_is_ssrf_guarded(db: Db, fmt: str) -> None:
    from app.main import create_app
    from tests.notify.conftest import webhook_settings

    settings = webhook_settings(db, webhook_allow_private=False)
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/models/ctr", json={"window": "1h"}).status_code == 200
        extra = {"routing_key": ROUTING_KEY} if fmt == "pagerduty" else {}
        r = client.post(
            "/v1/models/ctr/monitors",
            json={
                "name": "m",
                "rule": {"type": "log_loss_above", "threshold": 0.5},
                "webhook_format": fmt,
                "webhook_url": "http://127.0.0.1:9/hook",
                **extra,
            },
        )
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "webhook_url"
