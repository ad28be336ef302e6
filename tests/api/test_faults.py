"""Bounded answers under database faults (API.md "Time bounds and faults"), through a
real `lossmon serve`: while another connection holds the lock writes need, every write
answers 503 + Retry-After within the lock timeout (plus slack), stores nothing, and
/healthz (and reads of other data) keep answering; after the lock is released every
write succeeds."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.conftest import Db, Server, start_server, stop_server

LOCK_TIMEOUT_S = 2.0
WRITE_BOUND_S = 2.5  # the lock timeout plus the hops around it
HEALTH_BOUND_S = 0.1
READ_BOUND_S = 1.0
# More concurrent writers than uvicorn's threadpool has threads (40).
WRITERS = 48


@pytest.fixture
def fault_server(db: Db, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(
        db.url, tmp_path, extra_env={"LOSSMON_DB_LOCK_TIMEOUT_S": str(LOCK_TIMEOUT_S)}
    )
    yield srv
    stop_server(srv)


@contextmanager
def held_write_lock(db: Db) -> Iterator[None]:
    """PostgreSQL: ACCESS EXCLUSIVE on predictions; SQLite: the file's write lock."""
    if db.kind == "postgresql":
        pg = psycopg.connect(db.url.replace("+psycopg", ""))
        pg.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        try:
            yield
        finally:
            pg.rollback()
            pg.close()
    else:
        lite = sqlite3.connect(db.url.removeprefix("sqlite:///"), isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lite.execute("ROLLBACK")
            lite.close()


def _prediction(pid: str) -> dict[str, object]:
    ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"predictions": [{"prediction_id": pid, "timestamp": ts, "score": 0.3}]}


# Runs in its own process: in the test's process, 48 writer threads would share the
# GIL with it and their waits would count as the server's.
_PROBE = """
import http.client, json, sys, time
host, port, path, seconds = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
conn = http.client.HTTPConnection(host, port, timeout=10)
answers = []
print("ready", flush=True)
sys.stdin.readline()
end = time.monotonic() + seconds
while time.monotonic() < end:
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    answers.append((response.status, time.perf_counter() - started))
    time.sleep(0.02)
print(json.dumps(answers), flush=True)
"""


class Probe:
    """GETs a path every 20 ms for `seconds` from a separate process."""

    def __init__(self, server: Server, path: str, seconds: float) -> None:
        port = server.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [sys.executable, "-c", _PROBE, "127.0.0.1", port, path, str(seconds)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdin is not None
        assert self.process.stdout.readline().strip() == "ready"

    def start(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def answers(self) -> list[tuple[int, float]]:
        out, _ = self.process.communicate(timeout=30)
        return [(int(s), float(t)) for s, t in json.loads(out)]


def _writes(url: str, prefix: str, n: int) -> list[tuple[int, str | None, float]]:
    """n concurrent single-prediction POSTs (one shared connection pool, so the
    client's own set-up does not count): (status, Retry-After, seconds) of each."""

    def write(client: httpx.Client, pid: str) -> tuple[int, str | None, float]:
        started = time.perf_counter()
        r = client.post(url, json=_prediction(pid))
        return r.status_code, r.headers.get("retry-after"), time.perf_counter() - started

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    with httpx.Client(timeout=30, limits=limits) as client, ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: write(client, f"{prefix}-{i}"), range(n)))


def test_held_lock_gives_bounded_503s_and_health_keeps_answering(
    db: Db, fault_server: Server
) -> None:
    base = fault_server.url
    for model in ("ctr", "other"):
        assert httpx.put(f"{base}/v1/models/{model}", json={}).status_code == 200
    post_url = f"{base}/v1/models/ctr/predictions"
    assert _writes(post_url, "before", 1)[0][0] == 200

    # Both probes run while the writers wait (they give up after about 2 s).
    health = Probe(fault_server, "/healthz", seconds=1.8)
    reads = Probe(fault_server, "/v1/models/other", seconds=1.8)
    with held_write_lock(db):
        for p in (health, reads):
            p.start()
        results = _writes(post_url, "blocked", WRITERS)
        ready = httpx.get(f"{base}/readyz", timeout=10)
    health_answers, read_answers = health.answers(), reads.answers()

    print(
        f"{db.kind}: {WRITERS} writes, slowest 503 {max(r[2] for r in results):.2f}s; "
        f"/healthz worst {max(t for _, t in health_answers) * 1000:.0f} ms "
        f"({len(health_answers)} answers); reads worst "
        f"{max((t for _, t in read_answers), default=0) * 1000:.0f} ms"
    )
    statuses = sorted({s for s, _, _ in results})
    slowest = max(elapsed for _, _, elapsed in results)
    assert statuses == [503], results
    assert all(retry for _, retry, _ in results), results
    assert slowest < WRITE_BOUND_S, f"slowest 503 took {slowest:.2f}s"
    assert ready.status_code == 503 and "locked" in ready.json()["detail"], ready.text

    assert len(health_answers) >= 10
    assert {s for s, _ in health_answers} == {200}
    worst_health = max(t for _, t in health_answers)
    assert worst_health < HEALTH_BOUND_S, f"/healthz took {worst_health * 1000:.0f} ms"
    # Reads of data the lock does not cover keep answering (both databases: SQLite
    # readers use WAL snapshots, and blocked writers do not hold the read threads).
    assert read_answers and {s for s, _ in read_answers} == {200}, read_answers
    # Well under the lock timeout: a read never waits for a blocked writer's thread or
    # connection (it would, were writes not queued at the gate, app/api/write_gate.py).
    assert max(t for _, t in read_answers) < READ_BOUND_S

    # Released: everything works again, and nothing of the refused writes was stored.
    assert httpx.get(f"{base}/readyz").status_code == 200
    after = _writes(post_url, "after", 16)
    assert {s for s, _, _ in after} == {200}, after
    assert db.count("predictions") == 1 + 16
