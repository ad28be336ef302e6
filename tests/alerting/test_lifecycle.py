"""End to end over HTTP and a real local webhook receiver: drift fires exactly one
alert.firing, recovery exactly one alert.resolved; windows under min_labeled neither
fire nor resolve; a backfill that changes an evaluated window re-evaluates it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app import jobs
from app.main import create_app
from app.notify.signing import generate_secret
from tests.conftest import Db
from tests.notify.conftest import webhook_settings
from tests.notify.receiver import Receiver

HOUR = 3600
T0 = 1_795_132_800  # 2026-11-20T00:00:00Z
GOOD, BAD = 0.8, 0.45  # probability given to the true class: ℓ ≈ 0.223 vs ≈ 0.799


@pytest.fixture
def env(db: Db, receiver: Receiver) -> Iterator[tuple[TestClient, Db, Any]]:
    settings = webhook_settings(db)
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/models/ctr", json={"window": "1h"}).status_code == 200
        yield client, db, settings


def _ts(epoch: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def post_window(
    client: TestClient,
    w: int,
    quality: float,
    *,
    n: int = 40,
    labeled: int | None = None,
    prefix: str = "p",
) -> None:
    """n predictions in window w (half positives); `labeled` of them get their actual."""
    preds, acts = [], []
    for i in range(n):
        y = i % 2
        score = quality if y == 1 else 1 - quality
        pid = f"{prefix}{w}-{i}"
        preds.append({"prediction_id": pid, "timestamp": _ts(T0 + w * HOUR + i), "score": score})
        acts.append({"prediction_id": pid, "label": y})
    assert client.post("/v1/models/ctr/predictions", json={"predictions": preds}).status_code == 200
    take = n if labeled is None else labeled
    if take:
        r = client.post("/v1/models/ctr/actuals", json={"actuals": acts[:take]})
        assert r.status_code == 200


def tick(db: Db, settings: Any) -> jobs.TickReport:
    return jobs.tick(settings=settings, factory=db.factory, read_factory=db.read_factory)


def make_monitor(client: TestClient, receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    body = {
        "name": "ctr-degrading",
        "rule": {"type": "log_loss_above", "threshold": 0.5},
        "min_labeled": 20,
        "for_windows": 2,
        "webhook_url": receiver.url,
        "webhook_secret": generate_secret(),
        **overrides,
    }
    r = client.post("/v1/models/ctr/monitors", json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    out["_secret"] = body["webhook_secret"]
    return out


def events(receiver: Receiver) -> list[str]:
    return [json.loads(r.body)["type"] for r in receiver.received]


def test_drift_fires_once_and_recovery_resolves_once(env: Any, receiver: Receiver) -> None:
    client, db, settings = env
    monitor = make_monitor(client, receiver)
    plan = [GOOD, GOOD, GOOD, BAD, BAD, BAD, BAD, GOOD, GOOD]
    states = []
    for w, quality in enumerate(plan):
        post_window(client, w, quality)
        tick(db, settings)
        states.append(
            client.get(f"/v1/models/ctr/monitors/{monitor['monitor_id']}").json()["state"]
        )
    # for_windows=2: fires on the second bad window, stays firing, resolves on the first good.
    assert states == ["ok", "ok", "ok", "ok", "firing", "firing", "firing", "ok", "ok"]
    assert events(receiver) == ["alert.firing", "alert.resolved"]

    wh = Webhook(monitor["_secret"])
    payloads = []
    for req in receiver.received:
        payloads.append(wh.verify(req.body, req.headers))
        with pytest.raises(WebhookVerificationError):
            wh.verify(req.body.replace(b"ctr", b"cTr"), req.headers)
    firing, resolved = payloads
    assert firing["alert_id"] == resolved["alert_id"]
    assert firing["model_id"] == "ctr"
    assert firing["monitor"]["name"] == "ctr-degrading"
    assert firing["window"]["start"] == _ts(T0 + 4 * HOUR)  # the window that tripped it
    assert firing["window"]["log_loss"] > 0.5
    assert firing["resolved_at"] is None
    assert resolved["resolved_at"] is not None
    assert resolved["window"]["start"] == _ts(T0 + 7 * HOUR)

    alerts = client.get("/v1/alerts", params={"model_id": "ctr"}).json()["alerts"]
    assert [a["state"] for a in alerts] == ["resolved"]
    assert client.get("/v1/alerts", params={"state": "firing"}).json()["alerts"] == []
    assert alerts[0]["id"] == alerts[0]["alert_id"] == firing["alert_id"]
    detail = client.get(f"/v1/alerts/{alerts[0]['alert_id']}").json()
    assert [(d["event_type"], d["status"], d["attempts"]) for d in detail["deliveries"]] == [
        ("alert.firing", "delivered", 1),
        ("alert.resolved", "delivered", 1),
    ]
    # webhook-id is the delivery id: receivers can dedupe on it.
    assert [r.headers["webhook-id"] for r in receiver.received] == [
        d["delivery_id"] for d in detail["deliveries"]
    ]

    # A second episode is a new alert.
    for w in (9, 10):
        post_window(client, w, BAD)
        tick(db, settings)
    assert events(receiver) == ["alert.firing", "alert.resolved", "alert.firing"]
    assert len(client.get("/v1/alerts").json()["alerts"]) == 2


def test_windows_under_min_labeled_neither_fire_nor_resolve(env: Any, receiver: Receiver) -> None:
    client, db, settings = env
    make_monitor(client, receiver, for_windows=1, min_labeled=30)
    post_window(client, 0, GOOD)
    post_window(client, 1, BAD, labeled=10)  # bad but thin: not evaluated
    tick(db, settings)
    assert events(receiver) == []
    post_window(client, 2, BAD)
    tick(db, settings)
    assert events(receiver) == ["alert.firing"]
    post_window(client, 3, GOOD, labeled=10)  # good but thin: does not resolve
    tick(db, settings)
    assert events(receiver) == ["alert.firing"]
    assert client.get("/v1/alerts", params={"state": "firing"}).json()["alerts"]
    # Its labels complete later: now it is evaluated, and resolves.
    acts = [{"prediction_id": f"p3-{i}", "label": i % 2} for i in range(40)]
    client.post("/v1/models/ctr/actuals", json={"actuals": acts})
    tick(db, settings)
    assert events(receiver) == ["alert.firing", "alert.resolved"]


def test_backfill_that_changes_an_evaluated_window_reevaluates_it(
    env: Any, receiver: Receiver
) -> None:
    client, db, settings = env
    make_monitor(client, receiver, for_windows=1)
    post_window(client, 0, GOOD)
    tick(db, settings)
    assert events(receiver) == []
    # Corrected labels (e.g. charge-backs) flip half the window: its loss rises past 0.5.
    flips = [{"prediction_id": f"p0-{i}", "label": 1 - i % 2} for i in range(0, 40, 2)]
    client.post("/v1/models/ctr/actuals", json={"actuals": flips})
    report = tick(db, settings)
    assert report.compute.computed == 1
    assert events(receiver) == ["alert.firing"]
    # Corrected back: the same window now resolves the alert.
    unflip = [{"prediction_id": f"p0-{i}", "label": i % 2} for i in range(0, 40, 2)]
    client.post("/v1/models/ctr/actuals", json={"actuals": unflip})
    tick(db, settings)
    assert events(receiver) == ["alert.firing", "alert.resolved"]


def test_receiver_down_then_back_gets_every_transition(env: Any, receiver: Receiver) -> None:
    client, db, _ = env
    settings = webhook_settings(db, webhook_backoff_base_s=0.01, webhook_backoff_max_s=0.02)
    make_monitor(client, receiver, for_windows=1)
    receiver.stop()  # connection refused
    post_window(client, 0, BAD)
    tick(db, settings)
    post_window(client, 1, GOOD)
    tick(db, settings)
    receiver.reply(500, 500)  # then 500s once it is back
    receiver.start()
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sorted(set(events(receiver))) != [
        "alert.firing",
        "alert.resolved",
    ]:
        time.sleep(0.05)
        jobs.deliver_webhooks(settings=settings, factory=db.factory)
    delivered = [json.loads(r.body)["type"] for r in receiver.received]
    assert sorted(set(delivered)) == ["alert.firing", "alert.resolved"]
    # Retries of one notification share one webhook-id and body.
    by_id: dict[str, set[bytes]] = {}
    for r in receiver.received:
        by_id.setdefault(r.headers["webhook-id"], set()).add(r.body)
    assert len(by_id) == 2
    assert all(len(bodies) == 1 for bodies in by_id.values())


def test_monitor_api_refuses_private_webhooks_and_hides_secrets(db: Db) -> None:
    settings = webhook_settings(db, webhook_allow_private=False)
    with TestClient(create_app(settings)) as client:
        client.put("/v1/models/ctr", json={})
        for url in [
            "http://127.0.0.1:9/hook",
            "http://localhost/hook",
            "http://10.0.0.5/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
        ]:
            r = client.post(
                "/v1/models/ctr/monitors",
                json={
                    "name": "m",
                    "rule": {"type": "skill_below", "threshold": 0},
                    "webhook_url": url,
                },
            )
            assert r.status_code == 422, (url, r.text)
            assert r.json()["detail"][0]["field"] == "webhook_url"
        r = client.post(
            "/v1/models/ctr/monitors",
            json={"name": "m", "rule": {"type": "skill_below", "threshold": 0}},
        )
        assert r.status_code == 201
        assert r.json()["webhook_secret"] is None
        bad_secret = client.post(
            "/v1/models/ctr/monitors",
            json={
                "name": "m2",
                "rule": {"type": "skill_below", "threshold": 0},
                "webhook_secret": "plain-secret-value",
            },
        )
        assert bad_secret.status_code == 422
        dup = client.post(
            "/v1/models/ctr/monitors",
            json={"name": "m", "rule": {"type": "skill_below", "threshold": 0}},
        )
        assert dup.status_code == 409


def test_secret_shown_once_and_stored_encrypted(env: Any, receiver: Receiver) -> None:
    client, db, _ = env
    monitor = make_monitor(client, receiver)
    assert monitor["webhook_secret"] == monitor["_secret"]
    got = client.get(f"/v1/models/ctr/monitors/{monitor['monitor_id']}").json()
    assert "webhook_secret" not in got
    assert got["has_webhook_secret"] is True
    listed = client.get("/v1/models/ctr/monitors").json()["monitors"][0]
    assert "webhook_secret" not in listed
    from sqlalchemy import text

    with db.engine.connect() as conn:
        dump = repr(conn.execute(text("SELECT * FROM monitors")).all())
    assert monitor["_secret"] not in dump
    assert monitor["_secret"].removeprefix("whsec_") not in dump


def test_monitor_crud(env: Any, receiver: Receiver) -> None:
    client, _, _ = env
    monitor = make_monitor(client, receiver)
    mid = monitor["monitor_id"]
    assert monitor["id"] == mid
    r = client.put(f"/v1/models/ctr/monitors/{mid}", json={"for_windows": 3})
    assert r.status_code == 200
    assert r.json()["for_windows"] == 3
    assert r.json()["rule"] == {"type": "log_loss_above", "threshold": 0.5}
    assert (
        client.put(
            f"/v1/models/ctr/monitors/{mid}", json={"rule": {"type": "trend", "alpha": 2}}
        ).status_code
        == 422
    )
    assert client.delete(f"/v1/models/ctr/monitors/{mid}").status_code == 204
    assert client.get(f"/v1/models/ctr/monitors/{mid}").status_code == 404
    assert client.get("/v1/models/nope/monitors").status_code == 404
