"""calibration_gap_above and label_coverage_below end to end over HTTP with a real
webhook receiver: an overconfident model fires, honest scores do not; a window whose
labels are missing fires only once it has left the grace period, and resolves when
they arrive."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.alerting.helpers import fired, history, pid_of, post_slice
from tests.alerting.test_lifecycle import GOOD, HOUR, T0, _ts, events, make_monitor, tick
from tests.notify.receiver import Receiver


def test_calibration_gap_monitor_fires_on_an_overconfident_model(
    ctr_env: Any, receiver: Receiver
) -> None:
    client, db, settings = ctr_env
    monitor = make_monitor(
        client,
        receiver,
        name="overconfident",
        rule={"type": "calibration_gap_above", "threshold": 0.2},
        min_labeled=50,
        for_windows=1,
    )

    def post(w: int, right_in_10: int) -> None:
        # Scores 0.9 / 0.1 everywhere; the side they lean to is right `right_in_10`
        # times in 10. At 9 in 10 the scores are honest (gap ≈ 0); at 6 in 10 the
        # model claims 90% but delivers 60%: log loss ≈ 1.0 against an expected 0.33.
        preds, acts = [], []
        for i in range(100):
            y = i % 2
            lean = y if i % 10 < right_in_10 else 1 - y
            pid = f"c{w}-{i}"
            preds.append(
                {
                    "prediction_id": pid,
                    "timestamp": _ts(T0 + w * HOUR + i),
                    "score": 0.9 if lean == 1 else 0.1,
                }
            )
            acts.append({"prediction_id": pid, "label": y})
        assert client.post("/v1/models/ctr/predictions", json={"predictions": preds}).is_success
        assert client.post("/v1/models/ctr/actuals", json={"actuals": acts}).is_success

    post(0, 9)
    tick(db, settings)
    assert events(receiver) == []
    honest = history(client)[_ts(T0)]
    assert abs(honest["calibration_gap"]) < 0.05

    post(1, 6)
    tick(db, settings)
    assert events(receiver) == ["alert.firing"]
    (payload,) = fired(receiver, monitor["_secret"])
    window = history(client)[_ts(T0 + HOUR)]
    assert payload["window"] == window
    assert window["calibration_gap"] > 0.5
    assert window["calibration_gap"] == pytest.approx(
        window["log_loss"] - window["expected_log_loss"]
    )
    assert payload["monitor"]["rule"] == {"type": "calibration_gap_above", "threshold": 0.2}


def test_label_coverage_monitor_waits_out_the_grace_window(
    ctr_env: Any, receiver: Receiver
) -> None:
    client, db, settings = ctr_env
    make_monitor(
        client,
        receiver,
        name="labels-late",
        rule={"type": "label_coverage_below", "threshold": 0.5, "grace_windows": 1},
        min_labeled=30,  # predictions, for this rule
        for_windows=1,
    )

    def state() -> str:
        (m,) = client.get("/v1/models/ctr/monitors").json()["monitors"]
        return str(m["state"])

    post_slice(client, 0, GOOD, n=40)
    tick(db, settings)
    assert state() == "no_data"  # the only window is the newest: in grace
    post_slice(client, 1, GOOD, n=40, labeled=0)
    tick(db, settings)
    assert state() == "ok"  # window 0 judged (fully labeled); window 1 in grace
    post_slice(client, 2, GOOD, n=40, labeled=0)
    tick(db, settings)
    # Window 1 left the grace period still without labels: that is the alert.
    assert state() == "firing"
    assert events(receiver) == ["alert.firing"]
    payload = json.loads(receiver.received[0].body)
    assert payload["window"]["start"] == _ts(T0 + HOUR)
    assert payload["window"]["labeled"] == 0
    assert payload["window"]["label_coverage"] == 0.0
    # Its labels arrive: the same window resolves the alert.
    acts = [{"prediction_id": pid_of(1, i), "label": i % 2} for i in range(40)]
    assert client.post("/v1/models/ctr/actuals", json={"actuals": acts}).is_success
    tick(db, settings)
    assert events(receiver) == ["alert.firing", "alert.resolved"]
    # A newest window too small to be judged still ends the grace of the one before:
    # window 2 (no labels) is judged now, and fires a new alert.
    post_slice(client, 3, GOOD, n=5, labeled=0)
    tick(db, settings)
    assert events(receiver) == ["alert.firing", "alert.resolved", "alert.firing"]
    assert json.loads(receiver.received[-1].body)["window"]["start"] == _ts(T0 + 2 * HOUR)
