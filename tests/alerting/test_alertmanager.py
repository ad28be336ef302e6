"""The alertmanager format against a real Prometheus Alertmanager (Debian's
prometheus-alertmanager, started here on loopback with a generated config and a
temporary storage directory): the alert is listed by its /api/v2/alerts with the
documented labels while firing, is re-posted while firing, and is gone (resolved)
after recovery."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import devserver, jobs
from app.main import create_app
from tests.alerting.test_lifecycle import BAD, GOOD, post_window, tick
from tests.conftest import Db
from tests.notify.conftest import webhook_settings

BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
CONFIG = """\
route:
  receiver: "null"
  group_wait: 1s
receivers:
  - name: "null"
"""


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:  # loopback only
        return json.loads(response.read())


@pytest.fixture
def alertmanager() -> Iterator[str]:
    if BINARY is None:
        pytest.skip(
            "PROMETHEUS ALERTMANAGER NOT INSTALLED: the alertmanager-format integration "
            "test did not run (apt-get install prometheus-alertmanager; .ci/run does)"
        )
    directory = Path(tempfile.mkdtemp(prefix="lossmon-am-"))
    (directory / "alertmanager.yml").write_text(CONFIG)
    port = devserver.free_port()
    log = (directory / "am.log").open("wb")
    process = subprocess.Popen(
        [
            BINARY,
            f"--config.file={directory / 'alertmanager.yml'}",
            f"--storage.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a single, private instance
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"alertmanager did not start: {(directory / 'am.log').read_text()}"
                )
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_alert_fires_is_resent_and_resolves_in_alertmanager(db: Db, alertmanager: str) -> None:
    settings = webhook_settings(db, alertmanager_resend_s=0.5)
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/models/ctr", json={"window": "1h"}).status_code == 200
        r = client.post(
            "/v1/models/ctr/monitors",
            json={
                "name": "ctr-degrading",
                "rule": {"type": "log_loss_above", "threshold": 0.5},
                "min_labeled": 20,
                "webhook_format": "alertmanager",
                "webhook_url": alertmanager,
                "severity": "critical",
            },
        )
        assert r.status_code == 201, r.text
        monitor_id = r.json()["id"]

        post_window(client, 0, BAD)
        tick(db, settings)
        (alert,) = client.get("/v1/alerts", params={"model_id": "ctr"}).json()["alerts"]
        listed = _get(f"{alertmanager}/api/v2/alerts")
        assert len(listed) == 1, listed
        (am,) = listed
        assert am["labels"] == {
            "alertname": "ctr-degrading",
            "model_id": "ctr",
            "monitor_id": monitor_id,
            "severity": "critical",
        }
        assert am["annotations"]["alert_id"] == alert["alert_id"]
        assert am["status"]["state"] == "active"
        first_update = am["updatedAt"]

        # Re-posted while firing (here every 0.5 s): Alertmanager sees it again.
        time.sleep(1.0)
        jobs.deliver_webhooks(settings=settings, factory=db.factory)
        (am,) = _get(f"{alertmanager}/api/v2/alerts")
        assert am["updatedAt"] > first_update
        detail = client.get(f"/v1/alerts/{alert['alert_id']}").json()
        events = sorted((d["event_type"], d["status"]) for d in detail["deliveries"])
        assert events == [("alert.firing", "delivered"), ("alert.resend", "delivered")]

        post_window(client, 1, GOOD)
        tick(db, settings)
        (alert,) = client.get("/v1/alerts", params={"model_id": "ctr"}).json()["alerts"]
        assert alert["state"] == "resolved"
        # Resolved: endsAt has passed, so Alertmanager no longer lists it.
        assert _get(f"{alertmanager}/api/v2/alerts") == []
        # And no more re-posts once resolved.
        time.sleep(0.7)
        jobs.deliver_webhooks(settings=settings, factory=db.factory)
        assert _get(f"{alertmanager}/api/v2/alerts") == []
