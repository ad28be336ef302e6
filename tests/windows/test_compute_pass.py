"""Compute passes over the dirty-window queue: counts, idempotency, lease semantics,
concurrent passes (PostgreSQL), and the metric history endpoint."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from app.config import Settings
from app.db import session_scope
from app.main import create_app
from app.registry.models import MonitoredModel
from app.windows import dirty, service
from app.windows.models import DirtyWindow, WindowMetric
from app.windows.service import PassResult
from tests.conftest import Db
from tests.windows.reference import (
    HOUR,
    METRIC_FIELDS,
    T0,
    Row,
    api_windows,
    assert_api_matches,
    assert_metrics_equal,
    iso,
    make_rows,
    post_actuals,
    post_predictions,
    reference_windows,
    register,
    window_of,
)


def compute(db: Db, settings: Settings | None = None, **kw: Any) -> PassResult:
    return service.compute_pass(
        factory=db.factory, read_factory=db.read_factory, settings=settings or db.settings, **kw
    )


def post_all(client: TestClient, model: str, rows: list[Row]) -> None:
    post_predictions(client, model, rows)
    post_actuals(client, model, [r for r in rows if r.label is not None])


def metric_rows(db: Db, model: str) -> dict[int, dict[str, Any]]:
    cols = ["window_end", *METRIC_FIELDS]
    with session_scope(db.read_factory) as s:
        rows = s.scalars(select(WindowMetric).where(WindowMetric.model_id == model)).all()
        return {r.window_start: {c: getattr(r, c) for c in cols} for r in rows}


def fold(db: Db) -> None:
    """What every compute pass does before claiming and before settling."""
    with session_scope(db.factory) as s:
        dirty.fold(session=s)


def dirty_rows(db: Db) -> dict[tuple[str, int], tuple[int, str | None, int | None]]:
    fold(db)
    with session_scope(db.read_factory) as s:
        return {
            (d.model_id, d.window_start): (d.generation, d.claim_token, d.leased_until_us)
            for d in s.scalars(select(DirtyWindow))
        }


# --- pass counts and idempotency --------------------------------------------------------


def test_pass_counts_exactly_the_dirty_windows(client: TestClient, db: Db) -> None:
    m = register(client)
    res = compute(db)
    assert (res.computed, res.swept_windows, res.retried, res.stale) == (0, 0, 0, 0)

    rows = make_rows(np.random.default_rng(1), n=150, windows=5)
    post_all(client, m, rows)
    assert db.pending_windows() == 5
    res = compute(db)
    assert (res.computed, res.retried, res.stale) == (5, 0, 0)
    assert res.models == {m}
    assert db.pending_windows() == 0
    first = assert_api_matches(client, m, rows)
    assert compute(db).computed == 0  # nothing dirty any more

    # Re-sending everything (duplicates) and computing again: identical numbers.
    assert post_predictions(client, m, rows)["duplicates"] == len(rows)
    post_actuals(client, m, [r for r in rows if r.label is not None])
    res = compute(db)
    assert res.computed <= 5
    again = api_windows(client, m)
    assert {ws: {k: w[k] for k in METRIC_FIELDS} for ws, w in again.items()} == {
        ws: {k: w[k] for k in METRIC_FIELDS} for ws, w in first.items()
    }

    # A second model's windows are counted on their own.
    m2 = register(client, "other")
    post_predictions(client, m2, make_rows(np.random.default_rng(2), n=30, windows=3, prefix="o"))
    res = compute(db)
    assert (res.computed, res.models) == (3, {m2})


def test_small_batches_compute_every_window_once(client: TestClient, db: Db) -> None:
    m = register(client)
    rows = make_rows(np.random.default_rng(3), n=200, windows=9)
    post_all(client, m, rows)
    res = compute(db, db.settings_with(compute_batch_windows=2, compute_interval_s=3600))
    assert res.computed == 9
    assert db.pending_windows() == 0
    assert_api_matches(client, m, rows)


# --- lease semantics, with app.windows.dirty directly -----------------------------------

NOW = 1_800_000_000_000_000  # µs
LEASE = 60_000_000
STARTS = [T0, T0 + HOUR, T0 + 2 * HOUR]


@pytest.fixture
def queue(db: Db) -> Iterator[Db]:
    """Model "q" with three dirty windows (no data needed for the queue itself)."""
    now = datetime.now(UTC)
    with session_scope(db.factory) as s:
        s.add(
            MonitoredModel(id="q", window="1h", window_seconds=HOUR, created_at=now, updated_at=now)
        )
        s.flush()
        assert dirty.mark_dirty(session=s, model_id="q", window_starts=STARTS) == 3
    yield db


def _claim(db: Db, token: str, now_us: int, limit: int = 10) -> list[dirty.Claim]:
    fold(db)
    with session_scope(db.factory) as s:
        return dirty.claim(session=s, token=token, now_us=now_us, lease_us=LEASE, limit=limit)


def _lock(db: Db, token: str, claims: list[dirty.Claim]) -> dict[tuple[str, int], int]:
    fold(db)
    with session_scope(db.factory) as s:
        return dirty.lock_own_claims(session=s, token=token, claims=claims)


def _settle(db: Db, token: str, done: list[dirty.Claim], retry: list[dirty.Claim]) -> None:
    with session_scope(db.factory) as s:
        dirty.settle(session=s, token=token, done=done, retry=retry)


def _mark(db: Db, *starts: int) -> None:
    with session_scope(db.factory) as s:
        dirty.mark_dirty(session=s, model_id="q", window_starts=starts)


def test_claimed_window_is_not_claimable_until_its_lease_expires(queue: Db) -> None:
    db = queue
    a = _claim(db, "A", NOW, limit=2)
    assert [(c.model_id, c.window_start, c.generation) for c in a] == [
        ("q", STARTS[0], 1),
        ("q", STARTS[1], 1),
    ]
    b = _claim(db, "B", NOW + 1)
    assert [c.window_start for c in b] == [STARTS[2]]  # only the unleased one
    assert _claim(db, "C", NOW + LEASE // 2) == []
    assert _claim(db, "C", NOW + LEASE) == []  # leased_until itself is still held
    assert dirty_rows(db)[("q", STARTS[0])] == (1, "A", NOW + LEASE)
    c = _claim(db, "C", NOW + LEASE + 1)
    assert [x.window_start for x in c] == STARTS[:2]  # A's expired, B's still held
    assert dirty_rows(db)[("q", STARTS[0])][1] == "C"


def test_write_during_claim_keeps_window_dirty(queue: Db) -> None:
    db = queue
    claims = _claim(db, "A", NOW)
    _mark(db, STARTS[1])  # a write lands while A computes
    held = _lock(db, "A", claims)
    assert held == {("q", STARTS[0]): 1, ("q", STARTS[1]): 2, ("q", STARTS[2]): 1}
    done = [c for c in claims if held[(c.model_id, c.window_start)] == c.generation]
    retry = [c for c in claims if held[(c.model_id, c.window_start)] != c.generation]
    assert [c.window_start for c in retry] == [STARTS[1]]
    _settle(db, "A", done, retry)
    # Only the changed window stays, released so that anyone can claim it right away.
    assert dirty_rows(db) == {("q", STARTS[1]): (2, None, None)}
    again = _claim(db, "B", NOW + 1)
    assert [(c.window_start, c.generation) for c in again] == [(STARTS[1], 2)]
    _settle(db, "B", again, [])
    assert dirty_rows(db) == {}


def test_settle_never_deletes_a_newer_generation(queue: Db) -> None:
    """Even a caller that wrongly reports a window as done cannot lose a later write."""
    db = queue
    claims = _claim(db, "A", NOW)
    _mark(db, STARTS[0])
    _settle(db, "A", claims, [])
    assert set(dirty_rows(db)) == {("q", STARTS[0])}


def test_stale_claim_is_not_written_by_its_first_holder(queue: Db) -> None:
    db = queue
    a = _claim(db, "A", NOW)
    b = _claim(db, "B", NOW + LEASE + 1)  # A's lease expired: B takes over
    assert len(b) == 3
    assert _lock(db, "A", a) == {}  # A holds nothing any more
    _settle(db, "A", a, a)  # neither deletes nor releases B's claims
    assert {k: v[1] for k, v in dirty_rows(db).items()} == {("q", s): "B" for s in STARTS}
    assert _lock(db, "B", b) == {("q", s): 1 for s in STARTS}
    _settle(db, "B", b, [])
    assert dirty_rows(db) == {}


class HookClock:
    """time.time for compute_pass, running `hook` once at the given call: compute_pass
    calls the clock once to claim and once more (after the claim committed, before it
    reads the rows) for computed_at."""

    def __init__(self, hook: Callable[[], None], at_call: int = 2, offset_s: float = 0.0):
        self.hook, self.at_call, self.offset_s, self.calls = hook, at_call, offset_s, 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls == self.at_call:
            self.hook()
        return datetime.now(UTC).timestamp() + self.offset_s


def test_pass_retries_a_window_written_during_its_compute(client: TestClient, db: Db) -> None:
    m = register(client)
    rows = make_rows(np.random.default_rng(4), n=120, windows=3)
    post_all(client, m, rows)
    extra = make_rows(np.random.default_rng(5), n=15, windows=1, prefix="x", labeled_frac=1.0)

    def write() -> None:  # mid-compute: new rows in the first window
        post_all(client, m, extra)

    res = compute(db, clock=HookClock(write))
    assert res.retried == 1
    assert res.stale == 0
    assert db.pending_windows() == 0
    assert_api_matches(client, m, [*rows, *extra])


def test_pass_does_not_write_windows_whose_claim_was_taken_over(client: TestClient, db: Db) -> None:
    m = register(client)
    rows = make_rows(np.random.default_rng(6), n=90, windows=3)
    post_all(client, m, rows)
    lease_s = db.settings.compute_lease_s

    def steal() -> None:  # another worker, far enough ahead that our lease has expired
        with session_scope(db.factory) as s:
            now_us = int((datetime.now(UTC).timestamp() + lease_s + 10) * 1e6)
            assert (
                len(dirty.claim(session=s, token="thief", now_us=now_us, lease_us=10**12, limit=99))
                == 3
            )

    res = compute(db, clock=HookClock(steal))
    assert (res.computed, res.stale, res.retried) == (0, 3, 0)
    assert db.count("window_metrics") == 0
    assert {v[1] for v in dirty_rows(db).values()} == {"thief"}
    # Once the thief's lease has expired, a later pass takes over and finishes.
    res = compute(db, clock=HookClock(lambda: None, offset_s=2 * 10**6 + lease_s))
    assert res.computed == 3
    assert db.pending_windows() == 0
    assert_api_matches(client, m, rows)


# --- concurrent passes (PostgreSQL) ----------------------------------------------------


@pytest.fixture
def pg_client(pg_db: Db) -> Iterator[TestClient]:
    with TestClient(create_app(pg_db.settings)) as c:
        yield c


def _run_concurrently(*targets: Callable[[], Any]) -> list[Any]:
    results: list[Any] = [None] * len(targets)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(targets))

    def run(i: int, fn: Callable[[], Any]) -> None:
        try:
            barrier.wait()
            results[i] = fn()
        except BaseException as exc:  # re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, f)) for i, f in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]
    return results


def test_concurrent_passes_equal_one_pass_on_a_copy(pg_db: Db, pg_client: TestClient) -> None:
    db, client = pg_db, pg_client
    n_windows = 40
    rows = make_rows(np.random.default_rng(8), n=600, windows=n_windows)
    settings = db.settings_with(compute_batch_windows=2, compute_interval_s=3600)

    register(client, "a")
    post_all(client, "a", rows)
    assert db.pending_windows() == n_windows
    passes = _run_concurrently(lambda: compute(db, settings), lambda: compute(db, settings))
    assert sum(p.computed for p in passes) == n_windows  # each window computed once
    assert sum(p.stale + p.retried for p in passes) == 0
    assert db.pending_windows() == 0

    register(client, "b")  # an identical copy, computed by one pass alone
    post_all(client, "b", rows)
    assert compute(db, settings).computed == n_windows
    got, ref = metric_rows(db, "a"), metric_rows(db, "b")
    assert len(got) == n_windows
    assert got == ref
    expected = reference_windows(rows)
    for ws, values in got.items():
        assert_metrics_equal(values, expected[ws], where=iso(ws))


def test_concurrent_ingestion_while_passes_run(pg_db: Db, pg_client: TestClient) -> None:
    db, client = pg_db, pg_client
    m = register(client)
    rng = np.random.default_rng(9)
    base = make_rows(rng, n=400, windows=20)
    more = make_rows(rng, n=300, windows=20, prefix="late")
    post_all(client, m, base)
    settings = db.settings_with(compute_batch_windows=2, compute_interval_s=3600)
    stop = threading.Event()

    def ingest() -> None:
        try:
            for i in range(0, len(more), 30):
                chunk = more[i : i + 30]
                post_predictions(client, m, chunk)
                # actuals of the previous chunk (some late), and a few corrections
                post_actuals(
                    client, m, [r for r in more[max(0, i - 30) : i + 30] if r.label is not None]
                )
        finally:
            stop.set()

    def passes() -> int:
        total = 0
        while not stop.is_set():
            total += compute(db, settings).computed
        return total

    _run_concurrently(ingest, passes, passes)
    compute(db, settings)
    assert db.pending_windows() == 0
    got = metric_rows(db, m)
    expected = reference_windows([*base, *more])
    assert sorted(got) == sorted(expected)
    for ws, exp in expected.items():
        assert_metrics_equal(got[ws], exp, where=iso(ws))
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM actuals WHERE pending")).scalar_one() == 0


# --- metric history endpoint ------------------------------------------------------------


@pytest.fixture
def history_rows(client: TestClient, db: Db) -> list[Row]:
    register(client)
    rows = make_rows(
        np.random.default_rng(10),
        n=360,
        windows=4,
        versions=("v1", "v2"),
        segments={"country": ["DE", "FR"], "device": ["ios", "web", "android"]},
    )
    post_all(client, "m", rows)
    compute(db)
    return rows


def test_history_start_end_is_half_open_on_window_start(
    client: TestClient, history_rows: list[Row]
) -> None:
    all_windows = assert_api_matches(client, "m", history_rows)
    starts = sorted(all_windows)
    assert starts == [T0 + i * HOUR for i in range(4)]
    r = client.get("/v1/models/m/metrics").json()
    assert (r["model_id"], r["window"]) == ("m", "1h")
    assert [w["start"] for w in r["windows"]] == [iso(s) for s in starts]  # oldest first

    def starts_for(**params: Any) -> list[int]:
        return sorted(api_windows(client, "m", **params))

    assert starts_for(start=iso(starts[1])) == starts[1:]
    assert starts_for(end=iso(starts[2])) == starts[:2]  # end is exclusive
    assert starts_for(start=iso(starts[1]), end=iso(starts[3])) == starts[1:3]
    assert starts_for(start=iso(starts[1] + 1)) == starts[2:]  # a window starting before
    assert starts_for(end=iso(starts[2] + 1)) == starts[:3]  # ... / after the bound
    assert starts_for(start=iso(starts[3] + HOUR)) == []
    # Sub-second bounds: [start, end) still decides on the window start.
    assert starts_for(start=iso(starts[1] - 0.5)) == starts[1:]
    assert starts_for(start=iso(starts[1] + 0.000001)) == starts[2:]
    assert starts_for(end=iso(starts[2] + 0.000001)) == starts[:3]
    # Other offsets denote the same instant.
    assert starts_for(start="2026-11-20T12:00:00+01:00") == starts[1:]
    # The filtered windows are the very same objects as in the full history.
    sub = api_windows(client, "m", start=iso(starts[1]), end=iso(starts[3]))
    assert sub == {s: all_windows[s] for s in starts[1:3]}


@pytest.mark.parametrize("param", ["start", "end"])
def test_history_naive_timestamp_is_422(
    client: TestClient, history_rows: list[Row], param: str
) -> None:
    r = client.get("/v1/models/m/metrics", params={param: "2026-11-20T10:00:00"})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert any(d.get("field") == param and "offset" in d["message"] for d in detail), detail


def test_history_rejects_bad_query(client: TestClient, history_rows: list[Row]) -> None:
    # An empty or inverted range holds no window: 200 with none (not an error).
    for start, end in [(T0 + HOUR, T0), (T0, T0)]:
        r = client.get("/v1/models/m/metrics", params={"start": iso(start), "end": iso(end)})
        assert r.status_code == 200
        assert r.json()["windows"] == []
    assert client.get("/v1/models/m/metrics", params={"segment": "country"}).status_code == 422
    assert client.get("/v1/models/nope/metrics").status_code == 404


def test_history_filters_by_version_and_segments(
    client: TestClient, db: Db, history_rows: list[Row]
) -> None:
    rows = history_rows
    unfiltered = assert_api_matches(client, "m", rows)

    v1 = [r for r in rows if r.model_version == "v1"]
    assert_api_matches(client, "m", v1, model_version="v1")
    de = [r for r in rows if r.segments["country"] == "DE"]
    assert_api_matches(client, "m", de, segment="country:DE")
    # Repeatable, AND-ed, and combinable with the version and the time range.
    de_web = [r for r in de if r.segments["device"] == "web"]
    assert_api_matches(client, "m", de_web, segment=["country:DE", "device:web"])
    both = [r for r in de_web if r.model_version == "v2"]
    assert len(both) > 5
    assert_api_matches(client, "m", both, segment=["device:web", "country:DE"], model_version="v2")
    in_range = [r for r in both if T0 + HOUR <= r.ts < T0 + 3 * HOUR]
    assert_api_matches(
        client,
        "m",
        in_range,
        segment=["device:web", "country:DE"],
        model_version="v2",
        start=iso(T0 + HOUR),
        end=iso(T0 + 3 * HOUR),
    )
    body = client.get(
        "/v1/models/m/metrics", params={"model_version": "v2", "segment": ["country:DE"]}
    ).json()
    assert (body["model_version"], body["segments"]) == ("v2", ["country:DE"])

    # No match: no windows; an unknown key or version is not an error.
    assert api_windows(client, "m", segment="country:XX") == {}
    assert api_windows(client, "m", segment="planet:mars") == {}
    assert api_windows(client, "m", model_version="v9") == {}
    # Filtering computes on demand; it neither changes nor dirties the stored windows.
    assert api_windows(client, "m") == unfiltered
    assert db.pending_windows() == 0


def test_history_segment_value_may_contain_colons(client: TestClient, db: Db) -> None:
    register(client)
    rows = [
        Row(pid="a", ts=T0 + 1, score=0.7, label=1, segments={"url": "http://x"}),
        Row(pid="b", ts=T0 + 2, score=0.2, label=1, segments={"url": "http"}),
    ]
    post_all(client, "m", rows)
    compute(db)
    assert_api_matches(client, "m", rows[:1], segment="url:http://x")


@pytest.mark.parametrize("key", ['country"]', 'coun"try', "a\\b", "country x"])
def test_history_segment_key_outside_the_ingest_pattern_is_a_client_error(
    db: Db, history_rows: list[Row], key: str
) -> None:
    """Segment keys are restricted to [A-Za-z0-9_.-]{1,64} at ingest, so a query for any
    other key cannot match a stored row. It must be a 422 (or an empty result), never a
    server error: on SQLite reader.read_joined pastes the key into a JSON path, and a
    quote in it makes sqlite3 raise 'JSON path error' (an unwrapped DBAPI error -> 500)."""
    with TestClient(create_app(db.settings), raise_server_exceptions=False) as c:
        r = c.get("/v1/models/m/metrics", params={"segment": f"{key}:DE"})
        assert r.status_code in (200, 422), f"{r.status_code} {r.text}"
        if r.status_code == 200:
            assert r.json()["windows"] == []
        else:
            assert r.json()["detail"][0]["field"] == "segment"


def test_window_of_helper() -> None:
    assert window_of(T0 + HOUR - 1) == T0
