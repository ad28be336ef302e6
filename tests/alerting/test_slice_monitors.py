"""Monitors on one segment or model version, end to end over HTTP with a real webhook
receiver: only the degrading slice fires, its payload window is the slice window that
GET .../metrics?segment= reports, small segments stay quiet, and a slice watched after
its windows were computed still gets its whole history."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from app.main import create_app
from app.windows.models import SliceMetric
from tests.alerting.helpers import fired, history, loss_monitor, post_slice
from tests.alerting.test_lifecycle import BAD, GOOD, HOUR, T0, _ts, events, make_monitor, tick
from tests.conftest import Db
from tests.notify.conftest import webhook_settings
from tests.notify.receiver import Receiver


def test_segment_monitor_fires_once_when_only_its_segment_degrades(
    ctr_env: Any, receiver: Receiver
) -> None:
    client, db, settings = ctr_env
    de = make_monitor(client, receiver, **loss_monitor("de", segment="country:DE"))
    fr = make_monitor(client, receiver, **loss_monitor("fr", segment="country:FR"))
    whole = make_monitor(client, receiver, **loss_monitor("whole"))
    assert (de["segment"], de["model_version"]) == ("country:DE", None)
    for w, de_quality in enumerate([GOOD, BAD, BAD]):
        post_slice(client, w, de_quality, n=40, country="DE")
        post_slice(client, w, GOOD, n=120, country="FR")  # FR dominates the whole model
        tick(db, settings)

    # DE alone crossed 0.5; the whole model (≈0.37) and FR (≈0.22) never did.
    assert events(receiver) == ["alert.firing"]
    (payload,) = fired(receiver, de["_secret"])
    assert payload["monitor"] == {
        "id": de["id"],
        "name": "de",
        "rule": {"type": "log_loss_above", "threshold": 0.5},
        "model_version": None,
        "segment": "country:DE",
        "segment_key": None,
    }
    start = _ts(T0 + 1 * HOUR)
    assert payload["window"]["start"] == start
    assert payload["window"] == history(client, segment="country:DE")[start]
    assert payload["window"]["predictions"] == 40
    whole_window = history(client)[start]
    assert whole_window["log_loss"] < 0.5 < payload["window"]["log_loss"]

    states = {
        m["name"]: m["state"] for m in client.get("/v1/models/ctr/monitors").json()["monitors"]
    }
    assert states == {"de": "firing", "fr": "ok", "whole": "ok"}
    (alert,) = client.get("/v1/alerts", params={"monitor_id": de["id"]}).json()["alerts"]
    assert alert["monitor"]["segment"] == "country:DE"
    assert alert["window"] == payload["window"]
    assert client.get("/v1/alerts", params={"monitor_id": fr["id"]}).json()["alerts"] == []
    assert client.get("/v1/alerts", params={"monitor_id": whole["id"]}).json()["alerts"] == []


def test_version_monitor_watches_its_version_only(ctr_env: Any, receiver: Receiver) -> None:
    client, db, settings = ctr_env
    v2 = make_monitor(client, receiver, **loss_monitor("v2", model_version="v2"))
    make_monitor(client, receiver, **loss_monitor("v1", model_version="v1"))
    post_slice(client, 0, GOOD, n=120, version="v1")
    post_slice(client, 0, BAD, n=30, version="v2")  # the canary is bad
    tick(db, settings)
    (payload,) = fired(receiver, v2["_secret"])
    assert events(receiver) == ["alert.firing"]
    assert payload["monitor"]["model_version"] == "v2"
    assert payload["monitor"]["segment"] is None
    assert payload["window"] == history(client, model_version="v2")[_ts(T0)]


def test_relative_rule_on_a_segment_uses_the_segments_reference(
    ctr_env: Any, receiver: Receiver
) -> None:
    client, db, settings = ctr_env
    rule = {
        "type": "relative_to_reference",
        "reference_start": _ts(T0),
        "reference_end": _ts(T0 + 2 * HOUR),
        "max_increase": 0.2,
    }
    de = make_monitor(client, receiver, name="de", rule=rule, for_windows=1, segment="country:DE")
    make_monitor(client, receiver, name="whole", rule=rule, for_windows=1)

    def post_de(w: int, qualities: tuple[float, float]) -> None:
        # Two halves of different quality, so the window's loss has a spread (stderr).
        post_slice(client, w, qualities[0], n=20, country="DE", tag="a")
        post_slice(client, w, qualities[1], n=20, country="DE", tag="b")

    for w in (0, 1):  # reference: DE good (≈0.23), FR bad (≈0.80)
        post_de(w, (0.9, 0.7))
        post_slice(client, w, BAD, n=40, country="FR")
    post_de(2, (0.6, 0.5))  # DE ≈0.60: 2.6x its own reference
    post_slice(client, 2, GOOD, n=40, country="FR")
    tick(db, settings)

    # Against the whole model's reference (≈0.52) neither DE nor the whole model (≈0.41)
    # is 20% worse: only DE's own reference makes DE fire.
    assert events(receiver) == ["alert.firing"]
    (payload,) = fired(receiver, de["_secret"])
    start = _ts(T0 + 2 * HOUR)
    assert payload["window"] == history(client, segment="country:DE")[start]
    whole = history(client)
    reference = (whole[_ts(T0)]["log_loss"] + whole[_ts(T0 + HOUR)]["log_loss"]) / 2
    assert payload["window"]["log_loss"] < 1.2 * reference


def test_segment_below_min_labeled_never_fires(ctr_env: Any, receiver: Receiver) -> None:
    client, db, settings = ctr_env
    de = make_monitor(client, receiver, **loss_monitor("de", segment="country:DE"))
    for w in range(4):
        # DE is terrible but has only 10 labeled rows per window (min_labeled 20), even
        # though the whole window has plenty.
        post_slice(client, w, BAD, n=40, labeled=10, country="DE")
        post_slice(client, w, GOOD, n=100, country="FR")
        tick(db, settings)
    assert history(client, segment="country:DE")[_ts(T0)]["log_loss"] > 0.5
    assert events(receiver) == []
    got = client.get(f"/v1/models/ctr/monitors/{de['id']}").json()
    assert got["state"] == "no_data"
    assert client.get("/v1/alerts").json()["alerts"] == []


def _own_rows(db: Db, value: str) -> list[int]:
    with db.factory() as session:
        return list(
            session.scalars(
                select(SliceMetric.window_start)
                .where(
                    SliceMetric.model_id == "ctr",
                    SliceMetric.kind == "segment",
                    SliceMetric.key == "country",
                    SliceMetric.value == value,
                    SliceMetric.other.is_(False),
                )
                .order_by(SliceMetric.window_start)
            )
        )


def test_slice_watched_after_compute_gets_its_history_outside_the_top_n(
    db: Db, receiver: Receiver
) -> None:
    settings = webhook_settings(db, slice_top_n=1)  # only the biggest country per window
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/models/ctr", json={"window": "1h"}).status_code == 200
        for w in range(3):
            post_slice(client, w, GOOD, n=60, country="DE")
            post_slice(client, w, BAD, n=30, country="FR")  # small and bad all along
        tick(db, settings)
        assert _own_rows(db, "DE") == [T0, T0 + HOUR, T0 + 2 * HOUR]
        assert _own_rows(db, "FR") == []  # FR only lives in the `other` rows

        # Three bad windows in a row are needed: only the history can supply them.
        fr = make_monitor(
            client, receiver, **loss_monitor("fr", segment="country:FR", for_windows=3)
        )
        assert db.pending_windows() == 3  # the model's whole history, queued
        tick(db, settings)

        assert _own_rows(db, "FR") == [T0, T0 + HOUR, T0 + 2 * HOUR]
        assert db.pending_windows() == 0
        (payload,) = fired(receiver, fr["_secret"])
        start = _ts(T0 + 2 * HOUR)
        assert payload["window"]["start"] == start
        assert payload["window"] == history(client, segment="country:FR")[start]
        assert payload["window"]["predictions"] == 30


def test_slice_fields_validation_and_update(ctr_env: Any, receiver: Receiver) -> None:
    client, _, _ = ctr_env
    url = "/v1/models/ctr/monitors"
    both = client.post(url, json=loss_monitor("x", model_version="v1", segment="country:DE"))
    assert both.status_code == 422
    assert [e["field"] for e in both.json()["detail"]] == ["segment"]
    for bad in ["DE", "country:", ":DE", "coun try:DE", "country:D\u0000E", "k:" + "v" * 399]:
        r = client.post(url, json=loss_monitor("x", segment=bad))
        assert r.status_code == 422, bad
        assert r.json()["detail"][0]["field"] == "segment"
    # Values may hold ':' (only the key may not); explicit nulls are "not set".
    ok = client.post(url, json=loss_monitor("x", segment="url:https://a.b", model_version=None))
    assert ok.status_code == 201, ok.text
    assert (ok.json()["segment"], ok.json()["model_version"]) == ("url:https://a.b", None)

    mid = make_monitor(client, receiver, **loss_monitor("m", segment="country:DE"))["id"]

    def put(body: dict[str, Any]) -> tuple[str | None, str | None]:
        r = client.put(f"{url}/{mid}", json=body)
        assert r.status_code == 200, r.text
        got = client.get(f"{url}/{mid}").json()
        assert (got["model_version"], got["segment"]) == (
            r.json()["model_version"],
            r.json()["segment"],
        )
        return got["model_version"], got["segment"]

    assert put({"for_windows": 2}) == (None, "country:DE")  # left out: kept
    assert put({"model_version": "v2"}) == ("v2", None)  # replaces the slice
    assert put({"segment": "country:FR"}) == (None, "country:FR")
    assert put({"model_version": None, "segment": "country:DE"}) == (None, "country:DE")
    assert put({"segment": None}) == (None, None)  # back to the whole model
    assert put({"model_version": ""}) == ("", None)  # predictions sent without a version
    r = client.put(f"{url}/{mid}", json={"model_version": "v1", "segment": "country:DE"})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "segment"


def test_watching_a_new_slice_queues_the_models_history(ctr_env: Any, receiver: Receiver) -> None:
    client, db, settings = ctr_env
    for w in range(4):
        post_slice(client, w, GOOD, n=20, country="DE", version="v1")
    tick(db, settings)
    assert db.pending_windows() == 0
    url = "/v1/models/ctr/monitors"

    def create(name: str, **slice_: Any) -> str:
        return str(make_monitor(client, receiver, **loss_monitor(name, **slice_))["id"])

    def settle() -> None:
        tick(db, settings)
        assert db.pending_windows() == 0

    create("whole")
    assert db.pending_windows() == 0  # the whole model needs no slice
    de = create("de", segment="country:DE")
    assert db.pending_windows() == 4  # every computed window of the model
    settle()
    create("de-too", segment="country:DE")
    assert db.pending_windows() == 0  # already watched, so already precomputed
    client.put(f"{url}/{de}", json={"name": "de-renamed", "segment": "country:DE"})
    assert db.pending_windows() == 0  # slice unchanged
    client.put(f"{url}/{de}", json={"model_version": "v1"})
    assert db.pending_windows() == 4  # a new slice
    settle()
    client.put(f"{url}/{de}", json={"model_version": None})
    assert db.pending_windows() == 0  # back to the whole model
    # A refused update queues nothing either.
    dup = client.put(f"{url}/{de}", json={"name": "whole", "segment": "country:FR"})
    assert dup.status_code == 409
    assert db.pending_windows() == 0
