"""`lossmon compute` semantics: when it returns, every window that was dirty at its
start is computed, even while other passes hold some of them (it waits for live ones,
recomputes what they re-queue) or died holding them (their unrenewed leases lapse within
LOSSMON_COMPUTE_LEASE_S and are taken over). Live passes renew their leases (heartbeat).

In-process tests pin each case down; the process tests run the real thing: `lossmon
compute` beside `serve`'s own ticks, and after SIGKILL of a `lossmon worker` mid-pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app import devserver
from app.db import session_scope
from app.windows import dirty, service
from tests.conftest import Db, start_server, stop_server
from tests.windows.reference import (
    Row,
    assert_api_matches,
    make_rows,
    post_actuals,
    post_predictions,
    register,
)

SHORT_LEASE_S = 1.0


def post_all(client: Any, model: str, rows: list[Row], batch: int = 500) -> None:
    for i in range(0, len(rows), batch):
        post_predictions(client, model, rows[i : i + batch])
    labeled = [r for r in rows if r.label is not None]
    for i in range(0, len(labeled), batch):
        post_actuals(client, model, labeled[i : i + batch])


def _claim(db: Db, token: str, lease_s: float) -> list[dirty.Claim]:
    with session_scope(db.factory) as s:
        dirty.fold(session=s)
        now_us = int(time.time() * 1e6)
        return dirty.claim(
            session=s, token=token, now_us=now_us, lease_us=int(lease_s * 1e6), limit=99
        )


def until_done(db: Db, **kw: Any) -> service.PassResult:
    return service.compute_until_done(
        factory=db.factory,
        read_factory=db.read_factory,
        settings=db.settings_with(compute_lease_s=SHORT_LEASE_S, compute_interval_s=3600),
        **{"max_wait_s": 30.0, **kw},
    )


def test_dead_passes_leases_are_taken_over_once_they_lapse(client: TestClient, db: Db) -> None:
    m = register(client)
    rows = make_rows(np.random.default_rng(11), n=120, windows=4)
    post_all(client, m, rows)
    # A pass that died right after claiming: nobody renews its leases.
    assert len(_claim(db, "dead", lease_s=SHORT_LEASE_S)) == 4
    lines: list[str] = []
    started = time.monotonic()
    res = until_done(db, progress=lines.append)
    assert time.monotonic() - started < SHORT_LEASE_S + 5
    assert (res.dirty_at_start, res.computed, res.taken_over, res.unfinished) == (4, 4, 4, 0)
    assert res.waited_for == 4
    assert db.pending_windows() == 0
    assert_api_matches(client, m, rows)


def test_live_pass_keeps_its_leases_by_heartbeat(client: TestClient, db: Db) -> None:
    """A pass that computes for several lease lengths keeps its windows: nobody takes
    them over, and it writes all of them."""
    m = register(client)
    rows = make_rows(np.random.default_rng(12), n=90, windows=3)
    post_all(client, m, rows)
    stolen: list[int] = []

    class SlowClock:
        calls = 0

        def __call__(self) -> float:
            self.calls += 1
            if self.calls == 2:  # claimed, not read yet: compute "slowly"
                time.sleep(4 * SHORT_LEASE_S)
                stolen.append(len(_claim(db, "thief", lease_s=60)))
            return datetime.now(UTC).timestamp()

    settings = db.settings_with(compute_lease_s=SHORT_LEASE_S)
    res = service.compute_pass(
        factory=db.factory, read_factory=db.read_factory, settings=settings, clock=SlowClock()
    )
    assert stolen == [0]
    assert (res.computed, res.stale, res.retried) == (3, 0, 0)
    assert db.pending_windows() == 0
    assert_api_matches(client, m, rows)


def test_waits_for_a_live_pass_and_recomputes_what_it_requeues(client: TestClient, db: Db) -> None:
    """Another pass holds every window and takes long; data lands in one of them
    meanwhile, so that pass re-queues it. compute_until_done returns only when all are
    computed, from all the data."""
    m = register(client)
    rows = make_rows(np.random.default_rng(13), n=120, windows=4)
    post_all(client, m, rows)
    extra = make_rows(np.random.default_rng(14), n=20, windows=1, prefix="x", labeled_frac=1.0)
    claimed = threading.Event()
    release = threading.Event()

    class HoldingClock:
        calls = 0

        def __call__(self) -> float:
            self.calls += 1
            if self.calls == 2:
                claimed.set()
                release.wait(30)
            return datetime.now(UTC).timestamp()

    other: dict[str, service.PassResult] = {}
    settings = db.settings_with(compute_lease_s=SHORT_LEASE_S)

    def live_pass() -> None:
        other["result"] = service.compute_pass(
            factory=db.factory,
            read_factory=db.read_factory,
            settings=settings,
            clock=HoldingClock(),
        )

    thread = threading.Thread(target=live_pass)
    thread.start()
    assert claimed.wait(30)
    post_all(client, m, extra)  # the live pass will find the first window changed

    def let_go() -> None:
        time.sleep(3 * SHORT_LEASE_S)  # longer than a lease: only the heartbeat keeps it
        release.set()

    threading.Thread(target=let_go).start()
    res = until_done(db)
    thread.join(30)
    assert res.unfinished == 0 and res.waited_for == 4, res
    assert res.taken_over == 0  # the live pass's leases never lapsed
    assert other["result"].retried == 1
    assert db.pending_windows() == 0
    assert_api_matches(client, m, [*rows, *extra])


def test_gives_up_after_max_wait_and_says_how_many_are_left(client: TestClient, db: Db) -> None:
    m = register(client)
    post_all(client, m, make_rows(np.random.default_rng(15), n=30, windows=2))
    assert len(_claim(db, "slow", lease_s=600)) == 2  # held for longer than we wait
    res = until_done(db, max_wait_s=0.5)
    assert (res.dirty_at_start, res.held_at_start, res.computed, res.unfinished) == (2, 2, 0, 2)


# --- real processes ---------------------------------------------------------------------


def _lossmon(url: str, *argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *argv],
        env={**os.environ, "LOSSMON_DATABASE_URL": url, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def _wrong_windows(db: Db, model: str) -> list[tuple[int, Any, Any]]:
    """Windows whose stored counts differ from the raw rows: (start, expected, stored)."""
    with db.engine.connect() as conn:
        expected = {
            ws: (n, labeled)
            for ws, n, labeled in conn.execute(
                text(
                    "SELECT p.window_start, count(*), count(a.prediction_id) FROM predictions p "
                    "LEFT JOIN actuals a ON a.model_id = p.model_id "
                    "AND a.prediction_id = p.prediction_id "
                    "WHERE p.model_id = :m GROUP BY p.window_start"
                ),
                {"m": model},
            )
        }
        stored = {
            ws: (n, labeled)
            for ws, n, labeled in conn.execute(
                text(
                    "SELECT window_start, predictions, labeled FROM window_metrics "
                    "WHERE model_id = :m"
                ),
                {"m": model},
            )
        }
    return [
        (ws, expected.get(ws), stored.get(ws))
        for ws in sorted(set(expected) | set(stored))
        if expected.get(ws) != stored.get(ws)
    ]


# A round leaves serve's ticks ROUND_WINDOWS windows to work through, each with many
# slices (model versions, segment values), so a tick is still mid-pass seconds later,
# when `lossmon compute` has started (interpreter, schema check). Claims of TICK_BATCH
# windows: a tick holds leases for nearly all of its pass (all but the short transactions
# that claim the next batch).
ROUND_WINDOWS = 30
ROWS_PER_WINDOW = 50
SEGMENTS: dict[str, Sequence[str]] = {f"k{j}": [f"v{i}" for i in range(15)] for j in range(6)}
TICK_BATCH = 2
ROUNDS = 3
# Extra rounds (more data each) when no round overlapped a tick of serve's.
MAX_ROUNDS = ROUNDS + 3


@pytest.fixture
def ticking_server(db: Db, tmp_path: Path) -> Iterator[devserver.ServerProcess]:
    """`serve` with its own scheduler ticking all the time, in small claims."""
    srv = start_server(
        db.url,
        tmp_path,
        args=(),
        extra_env={
            "LOSSMON_COMPUTE_INTERVAL_S": "0.2",
            "LOSSMON_COMPUTE_BATCH_WINDOWS": str(TICK_BATCH),
            "LOSSMON_COMPUTE_LEASE_S": "3",
        },
    )
    yield srv
    stop_server(srv)


def _leased(db: Db) -> int:
    # A read-only transaction: on SQLite it takes no write lock, so serve never waits.
    with session_scope(db.read_factory) as s:
        return int(
            s.execute(
                text("SELECT count(*) FROM dirty_windows WHERE claim_token IS NOT NULL")
            ).scalar_one()
        )


def test_compute_beside_serves_own_ticks_mid_pass_returns_with_every_window_computed(
    db: Db, ticking_server: devserver.ServerProcess
) -> None:
    """Each round: data lands in ROUND_WINDOWS windows (new ones and old ones) while
    serve's ticks compute; `lossmon compute` starts while a tick is mid-pass; when it
    returns, every window matches the raw rows. Its report proves the overlap: it
    found windows leased by serve when it started."""
    env = {"LOSSMON_COMPUTE_LEASE_S": "3"}
    held_at_start = []
    outputs = []
    all_rows: list[Row] = []
    with httpx.Client(base_url=ticking_server.url, timeout=30) as client:
        m = register(client)  # type: ignore[arg-type]
        for round_ in range(MAX_ROUNDS):
            if round_ >= ROUNDS and any(h > 0 for h in held_at_start):
                break
            rows = make_rows(
                np.random.default_rng(100 + round_),
                n=ROWS_PER_WINDOW * ROUND_WINDOWS,
                # Each round adds windows and writes into all the earlier ones again.
                windows=ROUND_WINDOWS + 4 * round_,
                prefix=f"r{round_}-",
                versions=("a", "b", "c"),
                segments=SEGMENTS,
            )
            # Actuals land in every window: the last batches re-dirty (nearly) all of them.
            post_all(client, m, rows, batch=200)
            # A tick is computing now (it holds a lease); start compute beside it.
            deadline = time.monotonic() + 30
            while not _leased(db) and time.monotonic() < deadline:
                time.sleep(0.005)
            assert _leased(db), "serve's ticks never leased a window"
            done = _lossmon(db.url, "compute", "--max-wait", "60", env=env)
            assert done.returncode == 0, done.stderr
            last = done.stdout.strip().splitlines()[-1]
            outputs.append(last)
            start = re.search(
                r"(\d+) of (\d+) windows dirty at the start are computed "
                r"\((\d+) were being computed by other workers then\)",
                last,
            )
            assert start, last
            done_n, dirty_n, held_n = map(int, start.groups())
            assert done_n == dirty_n, last
            # 0 dirty: serve caught up before compute's start-up was over (slow on a
            # loaded machine); the round still checks the windows, and more rounds run
            # until one overlapped.
            held_at_start.append(held_n)
            assert _wrong_windows(db, m) == [], (round_, done.stdout, done.stderr)
            # Every field, and a stored slice too, as the reference computes them.
            all_rows += rows
            assert_api_matches(client, m, all_rows)  # type: ignore[arg-type]
            version_a = [r for r in all_rows if r.model_version == "a"]
            assert_api_matches(client, m, version_a, model_version="a")  # type: ignore[arg-type]
    print(db.kind, "windows serve held when compute started:", held_at_start, *outputs, sep="\n")
    # The overlap happened: in some round compute started while serve's tick held leases
    # (one instant, read-only; a tick holds none while it claims its next batch).
    assert any(h > 0 for h in held_at_start), (held_at_start, outputs)


def test_compute_after_a_worker_was_killed_mid_pass(
    client: TestClient, db: Db, tmp_path: Path
) -> None:
    m = register(client)
    env = {"LOSSMON_COMPUTE_LEASE_S": "2", "LOSSMON_COMPUTE_BATCH_WINDOWS": "1"}
    left_leased = 0
    # The kill must land while the worker holds a lease; between seeing one and the
    # SIGKILL the worker may settle it (seen in CI), so a fresh worker on fresh data
    # tries again.
    for attempt in range(4):
        rows = make_rows(np.random.default_rng(21), n=4000, windows=40, prefix=f"a{attempt}-")
        post_all(client, m, rows)
        worker = devserver.spawn(
            ["worker"],
            env={"LOSSMON_DATABASE_URL": db.url, **env},
            log_path=tmp_path / f"worker-{attempt}.log",
            cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 90
            leased = 0
            while time.monotonic() < deadline and not leased:
                leased = db.count("dirty_windows WHERE claim_token IS NOT NULL")
                time.sleep(0.005)
            assert leased, (tmp_path / f"worker-{attempt}.log").read_text()
        finally:
            devserver.kill(worker)
        left_leased = db.count("dirty_windows WHERE claim_token IS NOT NULL")
        if left_leased:
            break
    assert left_leased, "each of 4 workers settled its last claim just before its kill"
    started = time.monotonic()
    # Its own batch size (the default): only the lease length is shared.
    done = _lossmon(db.url, "compute", "--max-wait", "60", env={"LOSSMON_COMPUTE_LEASE_S": "2"})
    took = time.monotonic() - started
    print(f"killed holding {left_leased} windows; compute took {took:.1f}s: {done.stdout}")
    assert done.returncode == 0, done.stderr
    taken = re.search(r"(\d+) taken over from dead workers", done.stdout)
    assert taken and int(taken.group(1)) == left_leased, done.stdout
    # Seconds, not the old 5-minute lease: start-up, a 2 s lease and 40 small windows
    # (generous for a loaded 2-core machine).
    assert took < 60, done.stdout
    assert db.pending_windows() == 0
    assert _wrong_windows(db, m) == []
