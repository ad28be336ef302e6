"""End to end through a running `lossmon serve` (uvicorn, its own scheduler): labels
arrive 1-6 windows late, each window's all at once, so windows become evaluable out of
order. The alert must fire within the rule's own delay plus the label delay.

The rule's own delay is measured on the same windows once every label is in, with the
pure in-order evaluation (what the service would have done had labels been immediate).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app import devserver
from app.alerting import rules
from tests.conftest import Db, stop_server
from tests.notify.conftest import TEST_KEY

HOUR = 3600
T0 = 1_795_132_800  # 2026-11-20T00:00:00Z
REFERENCE = 24
DRIFT = REFERENCE + 6  # first drifted window
ROWS = 200
MIN_LABELED = 150
MAX_LABEL_DELAY = 6
MAX_STEPS = DRIFT + 20


def ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def window_rows(
    rng: np.random.Generator, w: int, drifted: bool
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    logits = rng.normal(-1.5, 1.5, ROWS)
    labels = rng.random(ROWS) < 1 / (1 + np.exp(-logits))
    noise = rng.normal(0.0, 2.0 if drifted else 0.3, ROWS)
    scores = 1 / (1 + np.exp(-(logits + noise)))
    preds, acts = [], []
    for i in range(ROWS):
        pid = f"w{w}-{i}"
        preds.append(
            {"prediction_id": pid, "timestamp": ts(T0 + w * HOUR + i), "score": float(scores[i])}
        )
        acts.append({"prediction_id": pid, "label": int(labels[i])})
    return preds, acts


class Stream:
    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=30)
        self.labels = 0

    def post(self, kind: str, rows: list[dict[str, Any]]) -> None:
        r = self.http.post(f"/v1/models/late/{kind}", json={kind: rows})
        assert r.status_code == 200, r.text
        if kind == "actuals":
            self.labels += len(rows)

    def windows(self) -> list[dict[str, Any]]:
        r = self.http.get(
            "/v1/models/late/metrics",
            params={"start": ts(T0), "end": ts(T0 + 400 * HOUR), "limit": 1000},
        )
        assert r.status_code == 200, r.text
        return list(r.json()["windows"])

    def settle(self, windows: int, monitor_id: str) -> None:
        """Wait until the server's scheduler computed every posted row and evaluated
        the monitor after that."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ws = self.windows()
            if len(ws) == windows and sum(w["labeled"] for w in ws) == self.labels:
                computed = max(w["computed_at"] for w in ws)
                m = self.http.get(f"/v1/models/late/monitors/{monitor_id}").json()
                if m["evaluated_at"] is not None and _t(m["evaluated_at"]) >= _t(computed):
                    return
            time.sleep(0.1)
        raise AssertionError("the scheduler did not catch up within 60 s")

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.http.get("/v1/alerts", params={"model_id": "late"}).json()["alerts"])


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_alert_fires_within_rule_delay_plus_label_delay(db: Db, tmp_path: Path) -> None:
    rng = np.random.default_rng(20261206)
    server = devserver.start_serve(
        db.url,
        workdir=tmp_path,
        extra_env={"LOSSMON_COMPUTE_INTERVAL_S": "0.2", "LOSSMON_SECRET_KEY": TEST_KEY},
        args=(),  # the scheduler runs in the server
        timeout_s=120,  # a loaded 2-core CI machine
    )
    try:
        s = Stream(server.url)
        assert s.http.put("/v1/models/late", json={"window": "1h"}).status_code == 200
        # The reference day, labels in at once.
        for w in range(REFERENCE):
            preds, acts = window_rows(rng, w, drifted=False)
            s.post("predictions", preds)
            s.post("actuals", acts)
        rule = {
            "type": "cusum",
            "reference_start": ts(T0),
            "reference_end": ts(T0 + REFERENCE * HOUR),
        }
        r = s.http.post(
            "/v1/models/late/monitors",
            json={"name": "late-drift", "rule": rule, "min_labeled": MIN_LABELED},
        )
        assert r.status_code == 201, r.text
        monitor_id = r.json()["id"]
        s.settle(REFERENCE, monitor_id)

        # Then one window per step; each window's labels arrive 1-6 steps later.
        label_delay = {w: int(rng.integers(1, MAX_LABEL_DELAY + 1)) for w in range(MAX_STEPS)}
        due: dict[int, list[dict[str, Any]]] = {}
        fired_step: int | None = None
        for step in range(REFERENCE, MAX_STEPS):
            preds, acts = window_rows(rng, step, drifted=step >= DRIFT)
            s.post("predictions", preds)
            due.setdefault(step + label_delay[step], []).extend(acts)
            arriving = due.pop(step, [])
            if arriving:
                s.post("actuals", arriving)
            s.settle(step + 1, monitor_id)
            if s.alerts():
                fired_step = step
                break
        assert fired_step is not None, "no alert within the stream"
        (alert,) = s.alerts()

        # Every label in: the rule's own delay, judged in order as if labels were instant.
        for step in sorted(due):
            s.post("actuals", due.pop(step))
        s.settle(fired_step + 1, monitor_id)
        points = [
            rules.WindowPoint(
                window_start=int(_t(w["start"]).timestamp()),
                labeled=w["labeled"],
                weight_sum=float(w["labeled"]),
                log_loss=w["log_loss"],
                log_loss_stderr=w["log_loss_stderr"],
                skill=w["skill"],
                baseline_log_loss=w["baseline_log_loss"],
            )
            for w in s.windows()
        ]
        parsed = rules.parse_rule(rule)
        first, end = rules.reference_range(parsed)  # type: ignore[arg-type]
        reference = rules.reference_from([p for p in points if first <= p.window_start < end])
        need = rules.lookback(parsed, 1)
        offline = next(
            t
            for t in range(DRIFT, len(points))
            if rules.evaluate(
                parsed,
                points[max(0, t + 1 - need) : t + 1],
                for_windows=1,
                min_labeled=MIN_LABELED,
                reference=reference,
            ).firing
        )
        rule_delay = offline - DRIFT + 1
        arrival = {w: w + label_delay[w] for w in range(REFERENCE, fired_step + 1)}
        # Windows whose labels came after those of a newer window: judged out of order.
        out_of_order = sum(
            1 for w in arrival if any(arrival[v] < arrival[w] for v in arrival if v > w)
        )
        measured = fired_step - DRIFT + 1
        alert_window = (int(_t(alert["window"]["start"]).timestamp()) - T0) // HOUR
        print(
            f"\nlate labels e2e: rule delay {rule_delay} window(s) (fires at window "
            f"{offline}); service fired after {measured} stream window(s), on window "
            f"{alert_window}; label delays {[label_delay[w] for w in range(DRIFT, fired_step + 1)]}"
            f"; windows labeled after a newer one: {out_of_order} of {len(arrival)}"
        )
        assert measured <= rule_delay + MAX_LABEL_DELAY
        assert alert_window >= offline  # never on a window the in-order rule did not fire
        assert alert_window <= fired_step
    finally:
        stop_server(server)
