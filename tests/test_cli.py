"""The `lossmon` command, run as a user would run it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx

from tests.conftest import Db, Server, start_server, stop_server


def _lossmon(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOSSMON_DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compute_runs_one_pass_and_exits(db: Db, server: Server) -> None:
    httpx.put(server.url + "/v1/models/ctr", json={})
    httpx.post(
        server.url + "/v1/models/ctr/predictions",
        json={
            "predictions": [
                {"prediction_id": "a", "score": 0.3, "timestamp": "2026-11-20T10:00:00Z"}
            ]
        },
    )
    out = _lossmon("compute", url=db.url)
    assert out.returncode == 0, out.stderr
    assert "computed 1 windows" in out.stdout
    windows = httpx.get(server.url + "/v1/models/ctr/metrics").json()["windows"]
    assert [w["predictions"] for w in windows] == [1]
    again = _lossmon("compute", url=db.url)
    assert "computed 0 windows" in again.stdout


def test_serve_on_fresh_sqlite_migrates_itself(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    srv = start_server(url, tmp_path)
    try:
        r = httpx.get(srv.url + "/readyz")
        assert r.status_code == 200
        assert r.json()["status"] == "ready"
    finally:
        stop_server(srv)


def test_serve_with_scheduler_computes_windows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sched.db'}"
    srv = start_server(url, tmp_path, extra_env={"LOSSMON_COMPUTE_INTERVAL_S": "0.5"}, args=())
    try:
        httpx.put(srv.url + "/v1/models/ctr", json={})
        httpx.post(
            srv.url + "/v1/models/ctr/predictions",
            json={"predictions": [{"prediction_id": "a", "score": 0.3}]},
        )
        import time

        deadline = time.monotonic() + 15
        windows: list[object] = []
        while time.monotonic() < deadline and not windows:
            windows = httpx.get(srv.url + "/v1/models/ctr/metrics").json()["windows"]
            time.sleep(0.2)
        assert len(windows) == 1
    finally:
        stop_server(srv)


def test_invalid_setting_fails_fast_naming_it(tmp_path: Path) -> None:
    env = {**os.environ, "LOSSMON_DATABASE_URL": "mysql://x", "LOSSMON_COMPUTE_INTERVAL_S": "-1"}
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "compute"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "database_url" in out.stderr
    assert "compute_interval_s" in out.stderr


def test_serve_on_postgres_refuses_unmigrated_schema(tmp_path: Path, pg_database_url: str) -> None:
    import psycopg

    admin = pg_database_url.replace("+psycopg", "")
    # Unique: concurrent test runs on one server must not drop each other's database.
    name = f"lossmon_test_unmigrated_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = pg_database_url.rsplit("/", 1)[0] + "/" + name
        out = _lossmon("compute", url=url)
        assert out.returncode == 3
        assert "lossmon migrate" in out.stderr
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _worker_pids(log: Path, timeout_s: float) -> list[int]:
    """The API processes that finished start-up, from serve's log (uvicorn logs "Started
    server process [pid]" then "Application startup complete." in each)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = log.read_text()
        started = [int(p) for p in re.findall(r"Started server process \[(\d+)\]", text)]
        if text.count("Application startup complete.") >= 2 or time.monotonic() > deadline:
            return started
        time.sleep(0.1)


def test_serve_with_workers_runs_several_processes(db: Db, tmp_path: Path) -> None:
    srv = start_server(db.url, tmp_path, args=("--no-scheduler", "--workers", "2"))
    try:
        # /healthz answered once the first worker was up; the second may still be
        # importing the app on a loaded host. Wait for both (the same bound as for the
        # first), so the requests below never race a starting worker.
        pids = _worker_pids(srv.log_path, timeout_s=90)
        children = subprocess.run(
            ["pgrep", "-P", str(srv.process.pid)], capture_output=True, text=True
        ).stdout.split()
        serving = set(pids) & {int(c) for c in children}
        assert len(serving) >= 2, (pids, children, srv.log_path.read_text())
        # A generous client timeout: the bound under test is the server's own.
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            assert client.put("/v1/models/ctr", json={}).status_code == 200
            for b in range(10):
                items = [{"prediction_id": f"{b}-{i}", "score": 0.5} for i in range(50)]
                r = client.post("/v1/models/ctr/predictions", json={"predictions": items})
                assert r.json() == {"accepted": 50, "duplicates": 0}
        assert db.count("predictions") == 500
    finally:
        stop_server(srv)


def test_serve_refuses_open_access_off_loopback(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'open.db'}"
    out = _lossmon("serve", "--host", "0.0.0.0", "--port", "1", url=url)
    assert out.returncode == 4
    assert "lossmon keys create" in out.stderr
