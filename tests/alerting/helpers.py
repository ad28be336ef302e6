"""Helpers of the end-to-end alerting tests: predictions posted per slice (segment
country, model version), the metric history by window start, verified webhooks."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook

from tests.alerting.test_lifecycle import HOUR, T0, _ts
from tests.notify.receiver import Receiver


def pid_of(w: int, i: int, country: str | None = None, version: str = "", tag: str = "") -> str:
    return f"{country or '-'}{version}{tag}-{w}-{i}"


def post_slice(
    client: TestClient,
    w: int,
    quality: float,
    *,
    n: int,
    labeled: int | None = None,
    country: str | None = None,
    version: str = "",
    tag: str = "",
) -> None:
    """n predictions of one slice in window w (half positives, the true class given
    probability `quality`); `labeled` of them (default all) get their actual."""
    preds, acts = [], []
    for i in range(n):
        y = i % 2
        pid = pid_of(w, i, country, version, tag)
        pred: dict[str, Any] = {
            "prediction_id": pid,
            "timestamp": _ts(T0 + w * HOUR + i),
            "score": quality if y == 1 else 1 - quality,
            "model_version": version,
        }
        if country is not None:
            pred["segments"] = {"country": country}
        preds.append(pred)
        acts.append({"prediction_id": pid, "label": y})
    r = client.post("/v1/models/ctr/predictions", json={"predictions": preds})
    assert r.status_code == 200, r.text
    take = n if labeled is None else labeled
    if take:
        r = client.post("/v1/models/ctr/actuals", json={"actuals": acts[:take]})
        assert r.status_code == 200, r.text


def history(client: TestClient, **params: str) -> dict[str, dict[str, Any]]:
    r = client.get("/v1/models/ctr/metrics", params=params)
    assert r.status_code == 200, r.text
    return {w["start"]: w for w in r.json()["windows"]}


def fired(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """The verified alert.firing payloads."""
    wh = Webhook(secret)
    out = [wh.verify(r.body, r.headers) for r in receiver.received]
    return [p for p in out if p["type"] == "alert.firing"]


def loss_monitor(name: str, *, threshold: float = 0.5, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "rule": {"type": "log_loss_above", "threshold": threshold},
        "min_labeled": 20,
        "for_windows": 1,
        **extra,
    }
