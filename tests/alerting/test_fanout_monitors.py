"""Fan-out monitors (segment_key): one monitor judges every precomputed value of a
segment key separately, end to end over HTTP with a real webhook receiver. Only the
degrading value fires, once per episode, with its own slice window; tiny segments stay
quiet; each value recovers on its own."""

from __future__ import annotations

import json
from typing import Any

from standardwebhooks.webhooks import Webhook

from tests.alerting.helpers import history, loss_monitor, post_slice
from tests.alerting.test_lifecycle import BAD, GOOD, HOUR, T0, _ts, events, make_monitor, tick
from tests.notify.receiver import Receiver

URL = "/v1/models/ctr/monitors"


def _payloads(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    wh = Webhook(secret)
    return [wh.verify(r.body, r.headers) for r in receiver.received]


def _post_window(client: Any, w: int, quality: dict[str, float]) -> None:
    for country, q in quality.items():
        post_slice(client, w, q, n=40, country=country)
    # Luxembourg: terrible, but only 10 labeled rows per window (min_labeled 20).
    post_slice(client, w, BAD, n=12, labeled=10, country="LU")


def test_fanout_fires_per_value_once_and_resolves_per_value(
    ctr_env: Any, receiver: Receiver
) -> None:
    client, db, settings = ctr_env
    mon = make_monitor(client, receiver, **loss_monitor("by-country", segment_key="country"))
    assert (mon["segment_key"], mon["segment"], mon["model_version"]) == ("country", None, None)
    secret = mon["_secret"]

    _post_window(client, 0, {"DE": GOOD, "FR": GOOD, "US": GOOD})
    tick(db, settings)
    assert events(receiver) == []
    assert client.get(f"{URL}/{mon['id']}").json()["state"] == "ok"

    # Only DE degrades: exactly one signed alert.firing, about DE, with DE's window.
    _post_window(client, 1, {"DE": BAD, "FR": GOOD, "US": GOOD})
    tick(db, settings)
    assert events(receiver) == ["alert.firing"]
    (de_fired,) = _payloads(receiver, secret)
    assert de_fired["segment"] == "country:DE"
    assert de_fired["monitor"]["segment_key"] == "country"
    assert de_fired["monitor"]["segment"] is None
    start1 = _ts(T0 + HOUR)
    assert de_fired["window"]["start"] == start1
    assert de_fired["window"] == history(client, segment="country:DE")[start1]
    assert de_fired["window"]["predictions"] == 40
    assert history(client)[start1]["log_loss"] < 0.5 < de_fired["window"]["log_loss"]
    got = client.get(f"{URL}/{mon['id']}").json()
    assert (got["state"], got["current_alert_id"]) == ("firing", de_fired["alert_id"])
    (alert,) = client.get("/v1/alerts", params={"monitor_id": mon["id"]}).json()["alerts"]
    assert (alert["segment"], alert["window"]) == ("country:DE", de_fired["window"])

    # FR degrades later: its own alert, no repeat for DE (still firing).
    _post_window(client, 2, {"DE": BAD, "FR": BAD, "US": GOOD})
    tick(db, settings)
    assert events(receiver) == ["alert.firing", "alert.firing"]
    fr_fired = _payloads(receiver, secret)[1]
    assert fr_fired["segment"] == "country:FR"
    assert fr_fired["alert_id"] != de_fired["alert_id"]
    start2 = _ts(T0 + 2 * HOUR)
    assert fr_fired["window"] == history(client, segment="country:FR")[start2]

    # DE recovers: exactly one alert.resolved, for DE's alert; FR keeps firing.
    _post_window(client, 3, {"DE": GOOD, "FR": BAD, "US": GOOD})
    tick(db, settings)
    assert events(receiver) == ["alert.firing", "alert.firing", "alert.resolved"]
    resolved = _payloads(receiver, secret)[2]
    assert (resolved["alert_id"], resolved["segment"]) == (de_fired["alert_id"], "country:DE")
    start3 = _ts(T0 + 3 * HOUR)
    assert resolved["window"] == history(client, segment="country:DE")[start3]
    got = client.get(f"{URL}/{mon['id']}").json()
    assert (got["state"], got["current_alert_id"]) == ("firing", fr_fired["alert_id"])

    # A tick without new data changes nothing.
    tick(db, settings)
    assert len(receiver.received) == 3

    alerts = client.get("/v1/alerts", params={"monitor_id": mon["id"]}).json()["alerts"]
    assert sorted((a["segment"], a["state"]) for a in alerts) == [
        ("country:DE", "resolved"),
        ("country:FR", "firing"),
    ]
    # LU was terrible all along but never big enough to be judged; US was fine.
    assert history(client, segment="country:LU")[_ts(T0)]["log_loss"] > 0.5
    assert all(json.loads(r.body).get("segment") != "country:LU" for r in receiver.received)


def test_changing_the_fanout_key_closes_its_open_alerts(ctr_env: Any, receiver: Receiver) -> None:
    client, db, settings = ctr_env
    mon = make_monitor(client, receiver, **loss_monitor("by-country", segment_key="country"))
    _post_window(client, 0, {"DE": BAD, "FR": GOOD})
    tick(db, settings)
    assert events(receiver) == ["alert.firing"]
    r = client.put(f"{URL}/{mon['id']}", json={"segment_key": "device"})
    assert r.status_code == 200, r.text
    assert (r.json()["segment_key"], r.json()["state"]) == ("device", "pending")
    tick(db, settings)
    assert events(receiver) == ["alert.firing", "alert.resolved"]
    (alert,) = client.get("/v1/alerts", params={"monitor_id": mon["id"]}).json()["alerts"]
    assert (alert["state"], alert["segment"], alert["resolved_window"]) == (
        "resolved",
        "country:DE",
        None,
    )
    assert client.get(f"{URL}/{mon['id']}").json()["state"] == "no_data"  # no device values


def test_segment_key_validation_and_update(ctr_env: Any, receiver: Receiver) -> None:
    client, _, _ = ctr_env
    for other in ({"segment": "country:DE"}, {"model_version": "v1"}):
        r = client.post(URL, json=loss_monitor("x", segment_key="country", **other))
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["detail"]] == ["segment_key"]
    for bad in ["", "country:DE", "coun try", "k" * 65]:
        r = client.post(URL, json=loss_monitor("x", segment_key=bad))
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["field"] == "segment_key"
    ok = client.post(URL, json=loss_monitor("x", segment_key="k" * 64, segment=None))
    assert ok.status_code == 201, ok.text

    mid = make_monitor(client, receiver, **loss_monitor("m", segment="country:DE"))["id"]

    def put(body: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
        r = client.put(f"{URL}/{mid}", json=body)
        assert r.status_code == 200, r.text
        got = client.get(f"{URL}/{mid}").json()
        return got["model_version"], got["segment"], got["segment_key"]

    assert put({"segment_key": "country"}) == (None, None, "country")  # replaces the slice
    assert put({"for_windows": 2}) == (None, None, "country")  # left out: kept
    assert put({"model_version": "v2"}) == ("v2", None, None)
    assert put({"segment_key": "device"}) == (None, None, "device")
    assert put({"segment": "country:FR"}) == (None, "country:FR", None)
    assert put({"segment_key": "country", "segment": None}) == (None, None, "country")
    assert put({"segment_key": None}) == (None, None, None)  # back to the whole model
    # A duplicate name is still a 409 when the fan-out key changes too.
    dup = client.put(f"{URL}/{mid}", json={"name": "x", "segment_key": "device"})
    assert dup.status_code == 409, dup.text
    r = client.put(f"{URL}/{mid}", json={"segment_key": "country", "model_version": "v1"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "segment_key"
