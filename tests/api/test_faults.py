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
from collections.abc import Iterator
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
HEALTH_STALL_S = 0.25
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


# Concurrent single-prediction POSTs from their own lean process (asyncio streams, one
# connection each): what is timed is the server's answer, not this process's threads.
_WRITER = """
import asyncio, json, sys, time
host, port, path, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
n, ts = int(sys.argv[5]), sys.argv[6]

async def one(i, opened):
    reader, writer = await asyncio.open_connection(host, port)
    body = json.dumps({"predictions": [
        {"prediction_id": f"{prefix}-{i}", "timestamp": ts, "score": 0.3}]}).encode()
    head = (f"POST {path} HTTP/1.1\\r\\nHost: {host}\\r\\nContent-Type: application/json\\r\\n"
            f"Content-Length: {len(body)}\\r\\nConnection: close\\r\\n\\r\\n").encode()
    await opened.wait()
    started = time.perf_counter()
    writer.write(head + body)
    status_line = await reader.readline()
    elapsed = time.perf_counter() - started
    rest = (await reader.read()).decode("latin-1").lower()
    writer.close()
    retry = None
    for line in rest.split("\\r\\n"):
        if line.startswith("retry-after:"):
            retry = line.split(":", 1)[1].strip()
    return int(status_line.split()[1]), retry, elapsed

async def main():
    opened = asyncio.Event()
    tasks = [asyncio.create_task(one(i, opened)) for i in range(n)]
    await asyncio.sleep(0.2)  # connections open first: only the requests are timed
    opened.set()
    await asyncio.sleep(0.1)
    print("sent", flush=True)
    print(json.dumps(await asyncio.gather(*tasks)), flush=True)

asyncio.run(main())
"""


class Writers:
    """n concurrent single-prediction POSTs: (status, Retry-After, seconds) of each."""

    def __init__(self, url: str, prefix: str, n: int) -> None:
        host_port, path = url.removeprefix("http://").split("/", 1)
        host, port = host_port.split(":")
        ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self.process = subprocess.Popen(
            [sys.executable, "-c", _WRITER, host, port, "/" + path, prefix, str(n), ts],
            stdout=subprocess.PIPE,
            text=True,
        )

    def wait_sent(self) -> None:
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "sent"

    def results(self) -> list[tuple[int, str | None, float]]:
        out, _ = self.process.communicate(timeout=60)
        last = out.strip().splitlines()[-1]  # after "sent", unless wait_sent() read it
        return [(int(s), r, float(t)) for s, r, t in json.loads(last)]


def _writes(url: str, prefix: str, n: int) -> list[tuple[int, str | None, float]]:
    return Writers(url, prefix, n).results()


def test_held_lock_gives_bounded_503s_and_health_keeps_answering(
    db: Db, fault_server: Server
) -> None:
    base = fault_server.url
    for model in ("ctr", "other"):
        assert httpx.put(f"{base}/v1/models/{model}", json={}).status_code == 200
    post_url = f"{base}/v1/models/ctr/predictions"
    assert _writes(post_url, "before", 1)[0][0] == 200

    # Both probes run while the writers wait (they give up about 2 s after they were sent).
    health = Probe(fault_server, "/healthz", seconds=1.5)
    reads = Probe(fault_server, "/v1/models/other", seconds=1.5)
    with held_write_lock(db):
        writers = Writers(post_url, "blocked", WRITERS)
        writers.wait_sent()
        for p in (health, reads):
            p.start()
        results = writers.results()
        ready = httpx.get(f"{base}/readyz", timeout=10)
    health_answers, read_answers = health.answers(), reads.answers()

    print(
        f"{db.kind}: {WRITERS} writes, slowest 503 {max(r[2] for r in results):.2f}s; "
        f"/healthz ms {sorted(round(t * 1000) for _, t in health_answers)[-5:]} (worst 5) "
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
    # /healthz waits on nothing: without the write gate and an async route it would wait
    # for a free thread, i.e. about the lock timeout. The tolerance for the worst answer
    # is for one scheduling stall on a shared, overloaded machine (seen: 1 in 60 over 100
    # ms at load average 20 on 2 cores, before start-up objects were frozen out of the
    # garbage collector's full passes, app/main.py; since, worst 47 ms in 6 runs at load
    # average 5-8); the 90th percentile is held to the 100 ms.
    times = sorted(t for _, t in health_answers)
    p90 = times[int(0.9 * (len(times) - 1))]
    assert p90 < HEALTH_BOUND_S, f"/healthz p90 {p90 * 1000:.0f} ms"
    assert times[-1] < HEALTH_STALL_S, f"/healthz worst {times[-1] * 1000:.0f} ms"
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
