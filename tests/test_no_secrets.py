"""After a real run (server + worker, keys, a signed webhook), no API key, webhook
secret or signature appears in clear in the database or in any log line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
from sqlalchemy import inspect, text

from app.notify.signing import generate_secret
from tests.conftest import Db, free_port, start_server, stop_server
from tests.notify.conftest import TEST_KEY
from tests.notify.receiver import Receiver

ENV = {
    "LOSSMON_LOG_LEVEL": "DEBUG",
    "LOSSMON_SECRET_KEY": TEST_KEY,
    "LOSSMON_WEBHOOK_ALLOW_PRIVATE": "true",
    "LOSSMON_COMPUTE_INTERVAL_S": "0.3",
    "LOSSMON_DELIVER_INTERVAL_S": "0.2",
}


def _cli(db: Db, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env={**os.environ, **ENV, "LOSSMON_DATABASE_URL": db.url},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _dump(db: Db) -> str:
    parts = []
    with db.engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            parts.append(repr(conn.execute(text(f"SELECT * FROM {table}")).all()))
    return "\n".join(parts)


def test_no_plaintext_secret_in_database_or_logs(db: Db, tmp_path: Path) -> None:
    created = _cli(db, "keys", "create", "--scope", "admin", "--name", "ops")
    admin = created.stdout.strip()
    assert admin.startswith("lm_")
    ingest = _cli(db, "keys", "create", "--scope", "ingest").stdout.strip()
    receiver = Receiver(free_port())
    receiver.start()
    secret = generate_secret()
    server = start_server(db.url, tmp_path, extra_env=ENV)
    worker_log = tmp_path / "worker.log"
    worker = None
    try:
        auth = {"Authorization": f"Bearer {admin}"}
        assert httpx.put(server.url + "/v1/models/ctr", json={}, headers=auth).status_code == 200
        r = httpx.post(
            server.url + "/v1/models/ctr/monitors",
            headers=auth,
            json={
                "name": "m",
                "rule": {"type": "log_loss_above", "threshold": 0.5},
                "min_labeled": 5,
                "webhook_url": receiver.url,
                "webhook_secret": secret,
            },
        )
        assert r.status_code == 201
        preds = [{"prediction_id": f"p{i}", "score": 0.9} for i in range(10)]
        acts = [{"prediction_id": f"p{i}", "label": 0} for i in range(10)]
        ih = {"Authorization": f"Bearer {ingest}"}
        httpx.post(
            server.url + "/v1/models/ctr/predictions", json={"predictions": preds}, headers=ih
        )
        httpx.post(server.url + "/v1/models/ctr/actuals", json={"actuals": acts}, headers=ih)
        # Failures that a careless service might log with the credential in them.
        bad_key = admin[:-4] + "AAAA"
        httpx.get(server.url + "/v1/models", headers={"Authorization": f"Bearer {bad_key}"})
        httpx.put(server.url + "/v1/models/x", json={}, headers=ih)  # 403
        with worker_log.open("wb") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "worker"],
                env={**os.environ, **ENV, "LOSSMON_DATABASE_URL": db.url},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not receiver.received:
                time.sleep(0.1)
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=15)
        stop_server(server)
        receiver.stop()
    assert receiver.received, worker_log.read_text()[-2000:]
    signatures = [r.headers["webhook-signature"] for r in receiver.received]

    logs = server.log_path.read_text() + worker_log.read_text() + created.stderr
    assert "DEBUG" in logs or "INFO" in logs  # the logs are not empty
    database = _dump(db)
    secrets = {
        "admin key": admin,
        "admin key secret part": admin.split("_", 2)[2],
        "ingest key": ingest,
        "bad key": bad_key,
        "webhook secret": secret,
        "webhook secret body": secret.removeprefix("whsec_"),
        "encryption key": TEST_KEY,
    }
    for sig in signatures:
        secrets[f"signature {sig[:8]}"] = sig.split(",", 1)[1]
    leaks = [
        (name, where)
        for name, value in secrets.items()
        for where, haystack in (("logs", logs), ("database", database))
        if value in haystack
    ]
    assert leaks == []
