"""Concurrent writers of one window never queue on a shared row, and the per-process
caches of the hot path (API keys, model shapes) never let a stale entry through."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.auth import service as auth_service
from app.auth.cache import KeyCache, KeyInfo
from app.db import session_scope
from app.main import create_app
from app.windows import service as window_service
from tests.conftest import Db, start_server, stop_server

N = 64
TS = "2026-11-20T10:30:00Z"  # every prediction in the window 10:00-11:00


def test_64_concurrent_single_posts_to_one_window_all_succeed(db: Db, tmp_path: Path) -> None:
    # SQLite has one writer, so the 64 queue for it (API.md bounds that wait; the bound
    # itself is tested in tests/api/test_faults.py). On a loaded 2-core CI host the
    # 64th can take longer than the default 2 s: this test is about writers of one
    # window not failing each other, so it gives the queue room.
    server = start_server(db.url, tmp_path, extra_env={"LOSSMON_DB_LOCK_TIMEOUT_S": "15"})
    try:
        limits = httpx.Limits(max_connections=N, max_keepalive_connections=N)
        with httpx.Client(base_url=server.url, timeout=60, limits=limits) as http:
            assert http.put("/v1/models/ctr", json={"window": "1h"}).status_code == 200
            barrier = threading.Barrier(N)

            def post(i: int) -> httpx.Response:
                body = {"predictions": [{"prediction_id": f"p{i}", "timestamp": TS, "score": 0.5}]}
                barrier.wait(timeout=30)
                return http.post("/v1/models/ctr/predictions", json=body)

            with ThreadPoolExecutor(N) as pool:
                answers = list(pool.map(post, range(N)))
    finally:
        stop_server(server)
    assert [r.status_code for r in answers] == [200] * N, [r.text for r in answers]
    assert all(r.json() == {"accepted": 1, "duplicates": 0} for r in answers)
    assert db.count("predictions") == N
    # One change row per POST (no shared row), folded into one dirty window.
    assert db.count("window_changes") == N
    assert db.pending_windows() == 1
    result = window_service.compute_pass(
        factory=db.factory, read_factory=db.read_factory, settings=db.settings
    )
    assert result.computed == 1
    assert db.count("window_changes") == db.count("dirty_windows") == 0
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT predictions FROM window_metrics")).scalar_one() == N


def _pred(pid: str, **fields: object) -> dict[str, object]:
    return {"prediction_id": pid, "timestamp": TS, **fields}


def test_model_shape_changed_within_the_cache_ttl_is_seen(client: TestClient, db: Db) -> None:
    url = "/v1/models/m/predictions"
    assert client.put("/v1/models/m", json={"task": "binary"}).status_code == 200
    probs = {"probabilities": {"a": 0.3, "b": 0.7}}
    assert client.post(url, json={"predictions": [_pred("x", **probs)]}).status_code == 422
    # The shape is cached now. The model (still without data) turns multiclass.
    changed = {"task": "multiclass", "classes": ["a", "b"]}
    assert client.put("/v1/models/m", json=changed).status_code == 200
    # A binary row validated against the cached shape is not stored ...
    r = client.post(url, json={"predictions": [_pred("y", score=0.5)]})
    assert r.status_code == 422, r.text
    assert db.count("predictions") == 0
    # ... and a multiclass row is accepted right away.
    r = client.post(url, json={"predictions": [_pred("z", **probs)]})
    assert r.json() == {"accepted": 1, "duplicates": 0}


def test_stale_cached_binary_shape_never_stores_a_row(client: TestClient, db: Db) -> None:
    """Cache the binary shape with a refused row, change the task, then send a row that
    the cached shape would accept: the insert's version check refuses it."""
    url = "/v1/models/m/predictions"
    assert client.put("/v1/models/m", json={"task": "binary"}).status_code == 200
    assert client.post(url, json={"predictions": [_pred("x")]}).status_code == 422
    changed = {"task": "multiclass", "classes": ["a", "b"]}
    assert client.put("/v1/models/m", json=changed).status_code == 200
    r = client.post(url, json={"predictions": [_pred("y", score=0.5)]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "score"
    assert db.count("predictions") == 0


def test_revoked_key_stops_working_within_5_s(db: Db) -> None:
    with session_scope(db.factory) as s:
        new = auth_service.create_key(session=s, scope="ingest", name="t", now=datetime.now(UTC))
        admin = auth_service.create_key(session=s, scope="admin", name="a", now=datetime.now(UTC))
    with TestClient(create_app(db.settings)) as client:
        headers = {"Authorization": f"Bearer {admin.key}"}
        assert client.put("/v1/models/m", json={}, headers=headers).status_code == 200
        url, body = "/v1/models/m/predictions", {"predictions": [_pred("p", score=0.5)]}
        headers = {"Authorization": f"Bearer {new.key}"}
        assert client.post(url, json=body, headers=headers).status_code == 200  # cached now
        with session_scope(db.factory) as s:
            auth_service.revoke(session=s, key_id=new.key_id, now=datetime.now(UTC))
        revoked = time.monotonic()
        while client.post(url, json=body, headers=headers).status_code != 401:
            assert time.monotonic() - revoked < 5.0, "a revoked key still works after 5 s"
            time.sleep(0.1)


def test_key_cache_expires_and_caches_only_what_lets_a_request_through() -> None:
    now = [0.0]
    cache = KeyCache(ttl_s=2.0, clock=lambda: now[0])
    loads: list[str] = []

    def load(result: KeyInfo | None) -> KeyInfo | None:
        loads.append("x")
        return result

    info = KeyInfo(id="k", scope="ingest")
    assert cache.lookup("lm_k_s", lambda: load(info)) == info
    assert cache.lookup("lm_k_s", lambda: load(None)) == info  # cached
    now[0] = 2.0
    assert cache.lookup("lm_k_s", lambda: load(None)) is None  # expired: revoked now
    assert cache.lookup("lm_k_s", lambda: load(info)) == info  # a refusal is not cached
    assert len(loads) == 3
    assert cache.any_active(lambda: False) is False
    assert cache.any_active(lambda: True) is True  # open -> closed at once
    assert cache.any_active(lambda: False) is True  # closed is cached for the TTL
    now[0] = 4.5
    assert cache.any_active(lambda: False) is False
