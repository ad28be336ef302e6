"""Retention (API.md "Models: lifecycle"): raw rows of windows past a model's
retention_days go, window metrics and slices stay, stale pending actuals go, late
actuals past the horizon are answered as expired; ingest and compute keep working while
a retention run deletes. On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app import jobs
from app.db import session_scope
from app.ingestion import bulk
from app.retention import service as retention
from app.windows import dirty
from app.windows import service as window_service
from tests.conftest import Db
from tests.windows.reference import (
    HOUR,
    Row,
    api_windows,
    assert_api_matches,
    iso,
    make_rows,
    post_actuals,
    post_predictions,
    window_of,
)

DAY = 86_400
NOW = int(time.time()) // HOUR * HOUR + 1800  # half past the current hour
FIRST = NOW // HOUR * HOUR - 5 * DAY  # 5 days of hourly windows, up to the current hour
# retention_days=2: the first window that ends after the horizon NOW - 2 days is kept
KEEP_FROM = (NOW - 2 * DAY) // HOUR * HOUR


def _register(client: TestClient, model: str = "m", **extra: Any) -> str:
    r = client.put(f"/v1/models/{model}", json={"window": "1h", **extra})
    assert r.status_code == 200, r.text
    return model


def _compute_at(db: Db, now: float) -> window_service.PassResult:
    return window_service.compute_pass(
        factory=db.factory, read_factory=db.read_factory, settings=db.settings, clock=lambda: now
    )


def _ids(db: Db, table: str) -> set[str]:
    with db.engine.connect() as conn:
        return {r[0] for r in conn.execute(text(f"SELECT prediction_id FROM {table}"))}


def _metric_rows(db: Db, table: str) -> list[tuple[Any, ...]]:
    with db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2, 3"))]


def _store_pending(db: Db, model: str, pid: str, received_s: int) -> None:
    with session_scope(db.factory) as session:
        bulk.upsert_actuals(
            session=session,
            model_id=model,
            rows=bulk.ActualRows(
                prediction_ids=[pid],
                labels=[1],
                weights=[1.0],
                ts_us=[received_s * 1_000_000],
                pending=[True],
                window_starts=[None],
            ),
            received_us=received_s * 1_000_000,
        )


@pytest.fixture
def rows() -> list[Row]:
    # 121 hourly windows, segments so that slices exist too.
    return make_rows(
        np.random.default_rng(13),
        n=1_500,
        windows=121,
        t0=FIRST,
        labeled_frac=0.9,
        segments={"country": ["DE", "FR", "US"]},
    )


def test_first_kept_window_is_the_first_that_ends_after_the_horizon() -> None:
    horizon = NOW - 2 * DAY
    assert KEEP_FROM % HOUR == 0
    assert KEEP_FROM + HOUR > horizon >= KEEP_FROM


def test_retention_removes_exactly_the_rows_past_the_horizon_and_no_metric(
    client: TestClient, db: Db, rows: list[Row]
) -> None:
    m = _register(client, retention_days=2)
    assert client.get(f"/v1/models/{m}").json()["retention_days"] == 2
    post_predictions(client, m, rows)
    labeled = [r for r in rows if r.label is not None]
    post_actuals(client, m, labeled)
    # Pending actuals: one received long ago (goes), one just now (stays).
    _store_pending(db, m, "stale-pending", NOW - 3 * DAY)
    fresh = client.post(
        f"/v1/models/{m}/actuals", json={"actuals": [{"prediction_id": "fresh", "label": 0}]}
    )
    assert fresh.json() == {"accepted": 1, "matched": 0, "pending": 1, "expired": 0}
    # Computed back when nothing had expired: every window has metrics and slices.
    assert _compute_at(db, NOW - 10 * DAY).computed == 121
    windows_before = _metric_rows(db, "window_metrics")
    slices_before = _metric_rows(db, "slice_metrics")
    assert len(windows_before) == 121 and slices_before

    report = jobs.compute_and_evaluate(
        settings=db.settings, factory=db.factory, read_factory=db.read_factory, clock=lambda: NOW
    )

    kept = [r for r in rows if window_of(r.ts) >= KEEP_FROM]
    gone = [r for r in rows if window_of(r.ts) < KEEP_FROM]
    assert kept and gone
    assert _ids(db, "predictions") == {r.pid for r in kept}
    assert _ids(db, "actuals") == {r.pid for r in kept if r.label is not None} | {"fresh"}
    assert report.retention.predictions == len(gone)
    assert report.retention.actuals == len([r for r in gone if r.label is not None]) + 1
    assert _metric_rows(db, "window_metrics") == windows_before
    assert _metric_rows(db, "slice_metrics") == slices_before

    # A second run finds nothing; windows ending later are kept until their time.
    again = retention.run_retention(factory=db.factory, clock=lambda: NOW)
    assert (again.predictions, again.actuals) == (0, 0)
    assert _ids(db, "predictions") == {r.pid for r in kept}


def test_expired_actuals_are_counted_and_not_kept(client: TestClient, db: Db) -> None:
    # Counters are per process: a model id of its own per database.
    m = _register(client, f"expiring-{db.kind}", retention_days=1)
    old, recent = NOW - 3 * DAY, NOW - 3600
    post_predictions(client, m, [Row(pid="old-stored", ts=old, score=0.3)])
    body = {
        "actuals": [
            # past the horizon, prediction unknown: expired
            {"prediction_id": "gone", "label": 1, "timestamp": iso(old)},
            # past the horizon but its prediction is stored: kept and matched
            {"prediction_id": "old-stored", "label": 0, "timestamp": iso(old)},
            # within retention, prediction unknown: pending as always
            {"prediction_id": "later", "label": 1, "timestamp": iso(recent)},
            {"prediction_id": "gone-too", "label": 0, "timestamp": iso(old - DAY)},
        ]
    }
    r = client.post(f"/v1/models/{m}/actuals", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "matched": 1, "pending": 1, "expired": 2}
    assert _ids(db, "actuals") == {"old-stored", "later"}
    metrics = client.get("/metrics").text
    assert f'lossmon_ingest_actuals_total{{model="{m}",result="expired"}} 2.0' in metrics

    # Without retention nothing expires.
    n = _register(client, "forever")
    r = client.post(f"/v1/models/{n}/actuals", json={"actuals": body["actuals"][:1]})
    assert r.json() == {"accepted": 1, "matched": 0, "pending": 1, "expired": 0}


def test_compute_leaves_expired_windows_alone(client: TestClient, db: Db, rows: list[Row]) -> None:
    m = _register(client, retention_days=2)
    post_predictions(client, m, rows)
    assert _compute_at(db, NOW - 10 * DAY).computed == 121
    before = api_windows(client, m)
    retention.run_retention(factory=db.factory, clock=lambda: NOW)
    # A late label for a kept window and a stale dirty mark on an expired one.
    late = next(r for r in rows if window_of(r.ts) >= KEEP_FROM)
    post_actuals(client, m, [Row(pid=late.pid, ts=late.ts, score=late.score, label=1)])
    with session_scope(db.factory) as session:
        dirty.mark_dirty(session=session, model_id=m, window_starts=[FIRST])
    _compute_at(db, NOW)
    after = api_windows(client, m)
    assert sorted(after) == sorted(before)
    assert after[FIRST] == before[FIRST]  # not recomputed from nothing, not deleted
    assert after[window_of(late.ts)]["labeled"] == before[window_of(late.ts)]["labeled"] + 1
    assert db.pending_windows() == 0


def test_rows_kept_gauge(client: TestClient, db: Db, rows: list[Row]) -> None:
    m = _register(client, retention_days=2)
    post_predictions(client, m, rows)
    post_actuals(client, m, [r for r in rows if r.label is not None])
    _compute_at(db, NOW - 10 * DAY)
    retention.run_retention(factory=db.factory, clock=lambda: NOW)
    kept = [r for r in rows if window_of(r.ts) >= KEEP_FROM]
    text_ = client.get("/metrics").text
    assert f'lossmon_rows_kept{{kind="predictions",model="m"}} {float(len(kept))}' in text_
    labeled = len([r for r in kept if r.label is not None])
    assert f'lossmon_rows_kept{{kind="actuals",model="m"}} {float(labeled)}' in text_
    assert client.get(f"/v1/models/{m}/storage").json() == {
        "model_id": m,
        "retention_days": 2,
        "predictions_kept": len(kept),
        "actuals_kept": labeled,
    }
    assert client.get("/v1/models/nope/storage").status_code == 404


def test_ingest_and_compute_keep_working_during_retention(client: TestClient, db: Db) -> None:
    m = _register(client, retention_days=2)
    old = make_rows(np.random.default_rng(3), n=6_000, windows=72, t0=FIRST, labeled_frac=0.9)
    post_predictions(client, m, old)
    post_actuals(client, m, [r for r in old if r.label is not None])
    _compute_at(db, NOW - 10 * DAY)
    new_rows: list[Row] = []
    failures: list[str] = []
    running, stop = threading.Event(), threading.Event()

    def ingest_and_compute() -> None:
        # Runs from before the retention run starts until after it ends.
        i = 0
        while not stop.is_set():
            batch = [
                Row(pid=f"new-{i}-{k}", ts=NOW - 3600 + k, score=0.2 + k / 100, label=k % 2)
                for k in range(50)
            ]
            for path, body in (
                ("predictions", {"predictions": [r.prediction() for r in batch]}),
                ("actuals", {"actuals": [r.actual() for r in batch]}),
            ):
                r = client.post(f"/v1/models/{m}/{path}", json=body)
                if r.status_code != 200:
                    failures.append(f"{path}: {r.status_code} {r.text}")
            new_rows.extend(batch)
            _compute_at(db, NOW)
            running.set()
            i += 1

    worker = threading.Thread(target=ingest_and_compute)
    worker.start()
    assert running.wait(60)
    # One window per transaction: many short transactions interleave with the writes.
    report = retention.run_retention(factory=db.factory, clock=lambda: NOW, chunk_rows=1)
    stop.set()
    worker.join(60)
    assert not failures
    assert report.predictions == len(old)
    assert _ids(db, "predictions") == {r.pid for r in new_rows}
    _compute_at(db, NOW)
    assert_api_matches(client, m, new_rows, start=iso(window_of(NOW - 3600)))


def test_storage_is_a_read_and_answers_while_another_writer_holds_the_lock(
    client: TestClient, db: Db
) -> None:
    """GET .../storage reads on the read-only session: on SQLite it does not queue for
    the single write lock (it answered 503 after the lock timeout while a writer held it)."""
    if db.kind != "sqlite":
        pytest.skip("SQLite's write lock; PostgreSQL reads never take a write lock")
    m = _register(client, retention_days=2)
    lite = sqlite3.connect(db.url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        lite.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        r = client.get(f"/v1/models/{m}/storage")
        took = time.monotonic() - started
        lite.execute("ROLLBACK")
    finally:
        lite.close()
    assert r.status_code == 200, r.text
    assert took < 1.0, f"{took:.2f} s"
