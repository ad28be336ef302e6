"""Every window that becomes evaluable is judged, in window order, even when several
become evaluable between two ticks or one's labels arrive after a newer window's."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from app import jobs
from tests.alerting.test_lifecycle import BAD, GOOD, HOUR, T0, _ts, post_window, tick


def monitor(client: TestClient) -> str:
    r = client.post(
        "/v1/models/ctr/monitors",
        json={
            "name": "m",
            "rule": {"type": "log_loss_above", "threshold": 0.5},
            "min_labeled": 20,
            "for_windows": 1,
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def alerts(client: TestClient) -> list[dict[str, Any]]:
    return list(client.get("/v1/alerts", params={"model_id": "ctr"}).json()["alerts"])


def start(alert_window: dict[str, Any] | None) -> int:
    """The window index of a payload window."""
    assert alert_window is not None
    at = datetime.fromisoformat(alert_window["start"].replace("Z", "+00:00"))
    return (int(at.timestamp()) - T0) // HOUR


def test_windows_evaluable_in_one_tick_are_each_judged(ctr_env: Any) -> None:
    client, db, settings = ctr_env
    post_window(client, 0, GOOD)
    monitor(client)
    tick(db, settings)  # judges window 0
    # Three windows between two ticks: bad, bad, good. Judging only the newest (good)
    # would never see the episode.
    post_window(client, 1, BAD)
    post_window(client, 2, BAD)
    post_window(client, 3, GOOD)
    tick(db, settings)
    (alert,) = alerts(client)
    assert alert["state"] == "resolved"
    assert start(alert["window"]) == 1  # the window that tripped it
    assert start(alert["resolved_window"]) == 3


def test_a_window_labeled_late_is_judged_in_its_place(ctr_env: Any) -> None:
    client, db, settings = ctr_env
    post_window(client, 0, GOOD)
    monitor(client)
    tick(db, settings)
    post_window(client, 1, BAD, labeled=0)  # its labels are late
    post_window(client, 2, GOOD)
    tick(db, settings)
    assert alerts(client) == []  # window 1 not evaluable yet; 2 is fine
    # Window 1's labels arrive after window 2 was judged.
    acts = [{"prediction_id": f"p1-{i}", "label": i % 2} for i in range(40)]
    assert client.post("/v1/models/ctr/actuals", json={"actuals": acts}).status_code == 200
    tick(db, settings)
    (alert,) = alerts(client)
    # Fired on window 1, and resolved by the newest window, which is fine.
    assert start(alert["window"]) == 1
    assert alert["state"] == "resolved"
    assert start(alert["resolved_window"]) == 2
    # A correction of window 1 (recomputed again) is about the episode already decided.
    fix = [{"prediction_id": "p1-0", "label": 1, "timestamp": _ts(T0 + 5 * HOUR)}]
    assert client.post("/v1/models/ctr/actuals", json={"actuals": fix}).status_code == 200
    tick(db, settings)
    assert len(alerts(client)) == 1
    # A new bad window still opens a new episode.
    post_window(client, 3, BAD)
    tick(db, settings)
    newest = alerts(client)[0]
    assert len(alerts(client)) == 2 and newest["state"] == "firing"
    assert start(newest["window"]) == 3


def test_a_window_recomputed_while_an_evaluation_ran_is_judged_next_time(ctr_env: Any) -> None:
    """A compute pass stamps its windows, an evaluation starts later (its clock past the
    stamp) but before the pass commits, so it does not see them; the next evaluation must
    still judge them. (Seen with two workers: a monitor left "ok" on a bad window.)"""
    client, db, settings = ctr_env
    post_window(client, 0, GOOD)
    monitor(client)
    tick(db, settings)
    post_window(client, 1, GOOD)
    tick(db, settings)  # window 1 judged fine
    assert alerts(client) == []
    # Window 1's labels are corrected: it is bad now.
    acts = [{"prediction_id": f"p1-{i}", "label": 1 - i % 2} for i in range(40)]
    assert client.post("/v1/models/ctr/actuals", json={"actuals": acts}).status_code == 200
    # The evaluation that ran after the pass below stamped window 1 but before it
    # committed: flagged by some other change, it sees window 1 as it was.
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE monitors SET needs_eval = true"))
    later = time.time() + 100
    jobs.evaluate_monitors(factory=db.factory, clock=lambda: later)
    assert alerts(client) == []
    # The pass commits window 1, stamped before that evaluation, and its monitor is
    # evaluated again.
    jobs.compute_and_evaluate(settings=settings, factory=db.factory, read_factory=db.read_factory)
    (alert,) = alerts(client)
    assert alert["state"] == "firing"
    assert start(alert["window"]) == 1
