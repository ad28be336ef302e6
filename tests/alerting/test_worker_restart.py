"""A real `lossmon worker` killed (SIGKILL) after committing an alert but before its
webhook got through: a new worker delivers it, exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from app.main import create_app
from app.notify.signing import generate_secret
from tests.alerting.test_lifecycle import BAD, post_window
from tests.conftest import Db, free_port
from tests.notify.conftest import TEST_KEY, webhook_settings
from tests.notify.receiver import Receiver


def _worker(db: Db, tmp_path: Path, name: str, deliver_interval: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LOSSMON_DATABASE_URL": db.url,
        "LOSSMON_COMPUTE_INTERVAL_S": "0.3",
        "LOSSMON_DELIVER_INTERVAL_S": deliver_interval,
        "LOSSMON_WEBHOOK_ALLOW_PRIVATE": "true",
        "LOSSMON_SECRET_KEY": TEST_KEY,
        "LOSSMON_WEBHOOK_BACKOFF_BASE_S": "0.1",
        "LOSSMON_WEBHOOK_BACKOFF_MAX_S": "0.3",
        "LOSSMON_WEBHOOK_TIMEOUT_S": "2",
    }
    log = (tmp_path / f"{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "app.cli", "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


def _wait(predicate: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_killed_worker_alert_is_delivered_after_restart(db: Db, tmp_path: Path) -> None:
    receiver = Receiver(free_port())  # not listening yet
    secret = generate_secret()
    with TestClient(create_app(webhook_settings(db))) as client:
        client.put("/v1/models/ctr", json={"window": "1h"})
        r = client.post(
            "/v1/models/ctr/monitors",
            json={
                "name": "m",
                "rule": {"type": "log_loss_above", "threshold": 0.5},
                "min_labeled": 20,
                "for_windows": 1,
                "webhook_url": receiver.url,
                "webhook_secret": secret,
            },
        )
        assert r.status_code == 201
        post_window(client, 0, BAD)

    def scalar(sql: str) -> object:
        with db.engine.connect() as conn:
            return conn.execute(text(sql)).scalar()

    first = _worker(db, tmp_path, "worker1", deliver_interval="3600")
    try:
        assert _wait(lambda: scalar("SELECT count(*) FROM webhook_deliveries") == 1)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert scalar("SELECT count(*) FROM alerts WHERE state = 'firing'") == 1
    assert scalar("SELECT status FROM webhook_deliveries") == "pending"
    assert scalar("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'") == 0

    receiver.start()
    second = _worker(db, tmp_path, "worker2", deliver_interval="0.2")
    try:
        assert _wait(lambda: len(receiver.received) >= 1), (tmp_path / "worker2.log").read_text()
        time.sleep(1.5)  # a duplicate would arrive within this time
        assert scalar("SELECT status FROM webhook_deliveries") == "delivered"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(timeout=15)
        receiver.stop()
    assert len(receiver.received) == 1
    got = receiver.received[0]
    payload = Webhook(secret).verify(got.body, got.headers)
    assert payload["type"] == "alert.firing"
    assert json.loads(got.body)["model_id"] == "ctr"
