"""The latest *evaluated* window's gauges, the far-future guard, the queue gauges,
`lossmon worker --metrics-port`, and `promtool check metrics` / `check rules` on what we
expose and ship."""

from __future__ import annotations

import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app import counters, devserver
from tests.conftest import Db
from tests.notify.conftest import TEST_KEY
from tests.observability.test_metrics_endpoint import (
    _alert_with_deliveries,
    scrape,
    series,
    tick,
    unique,
    value,
)
from tests.windows.reference import (
    HOUR,
    T0,
    Row,
    make_rows,
    post_actuals,
    post_predictions,
    register,
)

PROMTOOL = shutil.which("promtool")
RULES = Path(__file__).resolve().parents[2] / "config" / "prometheus" / "lossmon-alerts.yml"


def needs_promtool() -> str:
    if PROMTOOL is None:
        pytest.skip(
            "PROMTOOL NOT INSTALLED: `promtool check metrics/rules` did not run "
            "(apt-get install prometheus; .ci/run does)"
        )
    return PROMTOOL


def promtool_check_metrics(text: str) -> None:
    result = subprocess.run(
        [needs_promtool(), "check", "metrics"],
        input=text.encode(),
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()


def test_evaluated_window_is_the_newest_with_enough_labels(client: TestClient, db: Db) -> None:
    model = register(client, unique("obs-eval"))
    # Three labeled windows of ~120 rows, then a newer window without labels yet.
    rows = make_rows(np.random.default_rng(3), n=360, windows=3, prefix="e", labeled_frac=1.0)
    thin = [Row(pid=f"thin{i}", ts=T0 + 3 * HOUR + i, score=0.3) for i in range(5)]
    post_predictions(client, model, [*rows, *thin])
    post_actuals(client, model, rows)
    tick(db)
    samples = scrape(client)
    assert value(samples, "lossmon_window_start_timestamp_seconds", model=model) == T0 + 3 * HOUR
    # No monitor: 200 labels needed, no window has them.
    assert value(samples, "lossmon_evaluated_window_log_loss", model=model) is None
    r = client.post(
        f"/v1/models/{model}/monitors",
        json={"name": "m", "rule": {"type": "log_loss_above", "threshold": 5.0}, "min_labeled": 50},
    )
    assert r.status_code == 201, r.text
    samples = scrape(client)
    start = value(samples, "lossmon_evaluated_window_start_timestamp_seconds", model=model)
    assert start == T0 + 2 * HOUR  # the newest window with >= 50 labels
    history = {
        w["start"]: w
        for w in client.get(
            f"/v1/models/{model}/metrics", params={"start": "2000-01-01T00:00:00Z"}
        ).json()["windows"]
    }
    window = history[datetime.fromtimestamp(start, UTC).isoformat().replace("+00:00", "Z")]
    assert value(samples, "lossmon_evaluated_window_log_loss", model=model) == window["log_loss"]
    assert value(samples, "lossmon_evaluated_window_labeled", model=model) == window["labeled"]


def test_a_window_starting_after_now_cannot_take_over(client: TestClient, db: Db) -> None:
    model = register(client, unique("obs-future"))
    rows = make_rows(np.random.default_rng(4), n=60, windows=1, prefix="f", labeled_frac=1.0)
    # Within ingest's future bound (1 day by default), but in a window not begun yet.
    soon = int(time.time()) + 3 * 3600
    ahead = [Row(pid="ahead", ts=soon, score=0.9, label=0)]
    post_predictions(client, model, [*rows, *ahead])
    post_actuals(client, model, [*rows, *ahead])
    tick(db)
    samples = scrape(client)
    assert value(samples, "lossmon_window_start_timestamp_seconds", model=model) == T0


def test_backlog_outbox_age_and_tick_gauges(
    client: TestClient, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = register(client, unique("obs-queue"))
    rows = make_rows(np.random.default_rng(5), n=30, windows=2, prefix="q")
    post_predictions(client, model, rows)
    samples = scrape(client)
    waiting = sum(series(samples, "lossmon_compute_backlog_windows").values())
    assert waiting >= 2  # two windows changed, not computed yet
    assert set(
        dict(k).get("queue") for k in series(samples, "lossmon_compute_backlog_windows")
    ) == {
        "dirty_windows",
        "window_changes",
    }
    tick(db)
    samples = scrape(client)
    assert sum(series(samples, "lossmon_compute_backlog_windows").values()) == 0
    assert value(samples, "lossmon_outbox_oldest_pending_age_seconds") == 0
    _alert_with_deliveries(db, model, ["pending", "delivered"])
    time.sleep(0.05)
    age = value(scrape(client), "lossmon_outbox_oldest_pending_age_seconds")
    assert age is not None and 0 < age < 60
    monkeypatch.setitem(counters.last_started_at, "compute", 1795168800.0)
    monkeypatch.setitem(counters.last_duration_s, "compute", 0.25)
    samples = scrape(client)
    assert value(samples, "lossmon_scheduler_last_run_timestamp_seconds", job="compute") == (
        1795168800.0
    )
    assert value(samples, "lossmon_scheduler_last_run_duration_seconds", job="compute") == 0.25


def test_promtool_accepts_the_api_metrics(
    client: TestClient, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_promtool()
    model = register(client, unique("obs-promtool"))
    rows = make_rows(np.random.default_rng(6), n=600, windows=2, prefix="p", labeled_frac=1.0)
    post_predictions(client, model, rows)
    post_actuals(client, model, rows)
    tick(db)
    _alert_with_deliveries(db, model, ["pending", "dead"])
    monkeypatch.setitem(counters.last_started_at, "compute", 1.0)
    monkeypatch.setitem(counters.last_duration_s, "compute", 0.5)
    monkeypatch.setitem(counters.last_run_at, "compute", 1.5)
    text = client.get("/metrics").text
    assert "lossmon_evaluated_window_log_loss" in text
    promtool_check_metrics(text)


def test_worker_metrics_port_exposes_liveness_and_passes_promtool(db: Db, tmp_path: Path) -> None:
    port = devserver.free_port()
    process = devserver.spawn(
        ["worker", "--metrics-port", str(port)],
        env={
            "LOSSMON_DATABASE_URL": db.url,
            "LOSSMON_COMPUTE_INTERVAL_S": "0.3",
            "LOSSMON_SECRET_KEY": TEST_KEY,
        },
        log_path=tmp_path / "worker.log",
        cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 90
        text = ""
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "worker.log").read_text()
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except httpx.TransportError:
                time.sleep(0.2)
                continue
            if 'lossmon_scheduler_last_success_timestamp_seconds{job="compute"}' in text:
                break
            time.sleep(0.2)
        names = {f.name for f in text_string_to_metric_families(text)}
        for name in (
            "lossmon_scheduler_last_success_timestamp_seconds",
            "lossmon_scheduler_last_run_timestamp_seconds",
            "lossmon_scheduler_last_run_duration_seconds",
            "lossmon_compute_backlog_windows",
            "lossmon_outbox_deliveries",
            "lossmon_outbox_oldest_pending_age_seconds",
        ):
            assert name in names, (name, text[-2000:])
        last = [
            s.value
            for f in text_string_to_metric_families(text)
            if f.name == "lossmon_scheduler_last_success_timestamp_seconds"
            for s in f.samples
            if s.labels.get("job") == "compute"
        ]
        assert last and abs(last[0] - time.time()) < 120
        if PROMTOOL is not None:
            promtool_check_metrics(text)
    finally:
        devserver.terminate(process)
    needs_promtool()  # a loud skip after the liveness checks when promtool is absent


def test_example_alert_rules_pass_promtool() -> None:
    result = subprocess.run(
        [needs_promtool(), "check", "rules", str(RULES)], capture_output=True, timeout=60
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert b"SUCCESS" in result.stdout
    assert "LossmonSchedulerStalled" in RULES.read_text()
