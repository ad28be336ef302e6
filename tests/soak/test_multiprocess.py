"""N processes behave as one: 2 API processes and 2 workers on one PostgreSQL database.

Two client threads (one per model) stream windows to both APIs alternately
(predictions to one, actuals to the other): good windows, then bad, then good again,
for `SOAK_MP_EPISODES` episodes. Two `lossmon worker`s compute, evaluate and deliver
concurrently. Once everything is quiet:

* window_metrics equal a single-process reference: the same posts replayed into a
  fresh database and computed by one in-process `jobs.tick`;
* the receiver got exactly one `alert.firing` and one `alert.resolved` per episode
  and model, each with a valid Standard Webhooks signature, and no redelivery.

A phase ends by waiting until the monitor has evaluated its last window, so each
episode is seen by the evaluators whatever the timing (otherwise a fast stream could
legitimately skip a whole episode between two ticks).
Sizes: SOAK_MP_EPISODES (default 2), SOAK_MP_ROWS (rows per window, default 100).
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from app import jobs, migrate
from app.config import load_settings
from app.db import create_engine_for, make_sessionmaker
from app.main import create_app
from app.notify.signing import generate_secret
from tests.conftest import PG_ADMIN_URL, Db, Server, free_port
from tests.notify.conftest import TEST_KEY
from tests.notify.receiver import Receiver
from tests.soak.support import (
    T0,
    env_int,
    iso,
    report,
    spawn_serve,
    spawn_worker,
    terminate,
    wait_for,
)

pytestmark = pytest.mark.soak

EPISODES = env_int("SOAK_MP_EPISODES", 2)
ROWS = env_int("SOAK_MP_ROWS", 100)
PHASE = 3  # windows per phase (> for_windows)
GOOD, BAD = 0.8, 0.45  # probability given to the true class: ℓ ≈ 0.223 vs ≈ 0.799
MODELS = ("ctr-a", "ctr-b")
PHASE_TIMEOUT_S = 30.0
QUIET_TIMEOUT_S = 60.0
HOUR = 3600

PROCESS_ENV = {
    "LOSSMON_COMPUTE_INTERVAL_S": "0.3",
    "LOSSMON_DELIVER_INTERVAL_S": "0.3",
    "LOSSMON_WEBHOOK_ALLOW_PRIVATE": "true",
    "LOSSMON_SECRET_KEY": TEST_KEY,
    "LOSSMON_WEBHOOK_BACKOFF_BASE_S": "0.2",
    "LOSSMON_WEBHOOK_BACKOFF_MAX_S": "1",
    "LOSSMON_WEBHOOK_TIMEOUT_S": "5",
}
METRIC_COLUMNS = (
    "window_end",
    "predictions",
    "labeled",
    "weight_sum",
    "label_coverage",
    "positive_rate",
    "log_loss",
    "baseline_log_loss",
    "skill",
    "log_loss_stderr",
    "log_loss_median",
    "log_loss_p90",
    "expected_log_loss",
    "accuracy",
)


def _plan() -> list[tuple[float, int]]:
    """(quality, phase index) per window: good, then (bad, good) per episode."""
    plan = [(GOOD, 0)] * PHASE
    for e in range(EPISODES):
        plan += [(BAD, 1 + 2 * e)] * PHASE + [(GOOD, 2 + 2 * e)] * PHASE
    return plan


def _window_posts(model: str, w: int, quality: float) -> list[tuple[str, dict[str, Any]]]:
    preds, acts = [], []
    for i in range(ROWS):
        y = i % 2
        pid = f"{model}-w{w}-{i}"
        preds.append(
            {
                "prediction_id": pid,
                "timestamp": iso(T0 + w * HOUR + i),
                "score": quality if y == 1 else 1 - quality,
            }
        )
        acts.append({"prediction_id": pid, "label": y})
    return [
        (f"/v1/models/{model}/predictions", {"predictions": preds}),
        (f"/v1/models/{model}/actuals", {"actuals": acts}),
    ]


class Stream:
    """Posts, alternating between the API processes, and records every acknowledged
    post (in order) for the reference replay."""

    def __init__(self, apis: list[Server], db: Db) -> None:
        self.apis = apis
        self.db = db
        self.posts: list[tuple[str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.turn = 0
        self.errors: list[BaseException] = []

    def send(self, http: httpx.Client, method: str, path: str, body: dict[str, Any]) -> Any:
        with self.lock:
            api = self.apis[self.turn % len(self.apis)]
            self.turn += 1
        r = http.request(method, api.url + path, json=body)
        assert r.status_code in (200, 201), (api.url, path, r.status_code, r.text)
        with self.lock:
            self.posts.append((method, path, body))
        return r.json()

    def monitor_state(self, monitor_id: str) -> tuple[str, int | None, bool]:
        with self.db.engine.connect() as conn:
            row = conn.execute(
                text("SELECT state, last_evaluated_window, needs_eval FROM monitors WHERE id = :i"),
                {"i": monitor_id},
            ).one()
        return str(row[0]), row[1], bool(row[2])

    def run(self, model: str, monitor_id: str, phases: list[dict[str, Any]]) -> None:
        try:
            with httpx.Client(timeout=30) as http:
                plan = _plan()
                for w, (quality, phase) in enumerate(plan):
                    for path, body in _window_posts(model, w, quality):
                        self.send(http, "POST", path, body)
                    if w + 1 == len(plan) or plan[w + 1][1] != phase:
                        self._end_of_phase(model, monitor_id, w, quality, phases)
        except BaseException as exc:
            self.errors.append(exc)

    def _end_of_phase(
        self, model: str, monitor_id: str, w: int, quality: float, phases: list[dict[str, Any]]
    ) -> None:
        want = "firing" if quality == BAD else "ok"
        last = T0 + w * HOUR
        t = time.monotonic()

        def settled() -> bool:
            state, evaluated, _ = self.monitor_state(monitor_id)
            return state == want and evaluated == last

        ok = wait_for(settled, PHASE_TIMEOUT_S, interval=0.05)
        phases.append(
            {
                "model": model,
                "window": w,
                "want": want,
                "settled": ok,
                "seconds": round(time.monotonic() - t, 2),
                "seen": self.monitor_state(monitor_id),
            }
        )
        assert ok, f"{model}: monitor not {want} at window {w}: {self.monitor_state(monitor_id)}"


def _metrics(url: str) -> dict[tuple[str, int], tuple[Any, ...]]:
    engine = create_engine_for(load_settings(database_url=url))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT model_id, window_start, "
                    + ", ".join(METRIC_COLUMNS)
                    + " FROM window_metrics"
                )
            ).all()
    finally:
        engine.dispose()
    return {(r[0], int(r[1])): tuple(r[2:]) for r in rows}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


@pytest.fixture
def reference_url(worker_id: str) -> Iterator[str]:
    """A second, fresh PostgreSQL database for the single-process reference run."""
    name = f"lossmon_soak_ref_{worker_id}_{os.getpid()}".replace("-", "_")
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    url = f"{base}/{name}"
    migrate.upgrade(url)
    yield url
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _reference_run(url: str, posts: list[tuple[str, str, dict[str, Any]]]) -> None:
    settings = load_settings(database_url=url, secret_key=TEST_KEY, compute_interval_s=3600)
    with TestClient(create_app(settings)) as client:
        for method, path, body in posts:
            r = client.request(method, path, json=body)
            assert r.status_code == 200, (path, r.text)
    engine = create_engine_for(settings)
    try:
        jobs.tick(
            settings=settings,
            factory=make_sessionmaker(engine),
            read_factory=make_sessionmaker(engine, readonly=True),
        )
    finally:
        engine.dispose()


def test_two_apis_two_workers_behave_as_one(
    pg_db: Db, reference_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    receiver = Receiver(free_port())
    receiver.start()
    apis: list[Server] = []
    workers = []
    secrets: dict[str, str] = {}
    monitors: dict[str, str] = {}
    phases: list[dict[str, Any]] = []
    try:
        apis = [spawn_serve(pg_db.url, tmp_path, extra_env=PROCESS_ENV) for _ in range(2)]
        workers = [spawn_worker(pg_db.url, tmp_path, f"worker{i}", PROCESS_ENV) for i in range(2)]
        stream = Stream(apis, pg_db)
        with httpx.Client(timeout=30) as http:
            for model in MODELS:
                stream.send(http, "PUT", f"/v1/models/{model}", {"window": "1h"})
                secrets[model] = generate_secret()
                r = http.post(
                    f"{apis[0].url}/v1/models/{model}/monitors",
                    json={
                        "name": f"{model}-degrading",
                        "rule": {"type": "log_loss_above", "threshold": 0.5},
                        "min_labeled": 20,
                        "for_windows": 2,
                        "webhook_url": receiver.url,
                        "webhook_secret": secrets[model],
                    },
                )
                assert r.status_code == 201, r.text
                monitors[model] = r.json()["monitor_id"]
        threads = [
            threading.Thread(target=stream.run, args=(m, monitors[m], phases), daemon=True)
            for m in MODELS
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=PHASE_TIMEOUT_S * (2 * EPISODES + 1) + 60)
        assert not any(t.is_alive() for t in threads), "a stream did not finish"
        assert not stream.errors, stream.errors
        stream_s = time.monotonic() - started

        expected_hooks = 2 * EPISODES * len(MODELS)

        def quiet() -> bool:
            with pg_db.engine.connect() as conn:
                busy = conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM dirty_windows)"
                        " + (SELECT count(*) FROM window_changes)"
                        " + (SELECT count(*) FROM monitors WHERE needs_eval)"
                        " + (SELECT count(*) FROM webhook_deliveries"
                        "    WHERE status <> 'delivered')"
                    )
                ).scalar_one()
            return busy == 0 and len(receiver.received) >= expected_hooks

        assert wait_for(quiet, QUIET_TIMEOUT_S), "not quiet: " + "; ".join(
            (tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(2)
        )
        time.sleep(2.0)  # a duplicate delivery would arrive within this time
        workers_alive = all(w.poll() is None for w in workers)
    finally:
        for w in workers:
            terminate(w)
        for api in apis:
            terminate(api.process)
        receiver.stop()

    with pg_db.engine.connect() as conn:
        deliveries = conn.execute(
            text("SELECT event_type, status, attempts FROM webhook_deliveries")
        ).all()
        alerts = conn.execute(text("SELECT model_id, state FROM alerts")).all()

    t_ref = time.monotonic()
    _reference_run(reference_url, stream.posts)
    ref_s = time.monotonic() - t_ref
    got, want = _metrics(pg_db.url), _metrics(reference_url)
    mismatched = sorted(
        k
        for k in set(got) | set(want)
        if k not in got
        or k not in want
        or not all(_same(a, b) for a, b in zip(got[k], want[k], strict=True))
    )
    bit_exact = got == want

    events: dict[str, list[tuple[str, str]]] = {m: [] for m in MODELS}
    bad_signatures = 0
    for req in receiver.received:
        body = json.loads(req.body)
        try:
            Webhook(secrets[body["model_id"]]).verify(req.body, req.headers)
        except Exception:
            bad_signatures += 1
        events[body["model_id"]].append((body["type"], body["alert_id"]))
    webhook_ids = [r.headers.get("webhook-id") for r in receiver.received]

    figures = {
        "apis": len(apis),
        "workers": len(workers),
        "episodes_per_model": EPISODES,
        "models": len(MODELS),
        "windows_per_model": len(_plan()),
        "rows_per_window": ROWS,
        "posts": len(stream.posts),
        "windows": len(got),
        "windows_mismatched": len(mismatched),
        "windows_bit_exact": bit_exact,
        "webhooks_received": len(receiver.received),
        "webhooks_expected": expected_hooks,
        "webhook_ids_unique": len(set(webhook_ids)) == len(webhook_ids),
        "bad_signatures": bad_signatures,
        "events": {m: [e for e, _ in ev] for m, ev in events.items()},
        "alerts": len(alerts),
        "delivery_attempts": sorted({int(a) for _, _, a in deliveries}),
        "compute_passes_per_worker": [
            (tmp_path / f"worker{i}.log").read_text().count("compute pass") for i in range(2)
        ],
        "slowest_phase_s": max((p["seconds"] for p in phases), default=None),
        "stream_seconds": round(stream_s, 1),
        "reference_seconds": round(ref_s, 1),
        "total_seconds": round(time.monotonic() - started, 1),
    }
    report(request, "multiprocess", figures)

    assert workers_alive, "a worker died"
    assert not mismatched, [(k, got.get(k), want.get(k)) for k in mismatched[:3]]
    assert len(got) == len(MODELS) * len(_plan())
    assert bad_signatures == 0
    assert figures["webhook_ids_unique"], webhook_ids
    for model in MODELS:
        kinds = [kind for kind, _ in events[model]]
        assert kinds == ["alert.firing", "alert.resolved"] * EPISODES, (model, kinds)
        ids = [alert_id for _, alert_id in events[model]]
        assert ids[0::2] == ids[1::2], "firing and resolved of an episode share its alert"
        assert len(set(ids)) == EPISODES, "one alert per episode"
    assert sorted(state for _, state in alerts) == ["resolved"] * (EPISODES * len(MODELS))
    assert sorted((e, s) for e, s, _ in deliveries) == sorted(
        [("alert.firing", "delivered"), ("alert.resolved", "delivered")] * EPISODES * len(MODELS)
    )
