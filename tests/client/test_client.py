"""lossmon.Client (clients/python) against a real `lossmon serve` (SQLite and PostgreSQL),
through a real loopback proxy that counts requests and injects 503s and lost responses."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lossmon import (
    ActualsResult,
    AuthError,
    Client,
    IngestResult,
    NotFound,
    RateLimited,
    Unavailable,
    ValidationFailed,
)

from app import jobs
from app.auth.service import create_key
from app.db import session_scope
from tests.client.proxy import Proxy
from tests.conftest import Db, Server, free_port, start_server, stop_server

T0 = datetime(2026, 11, 20, tzinfo=UTC)


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    p = Proxy(server.url)
    yield p
    p.close()


def preds(n: int, prefix: str = "p", start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "prediction_id": f"{prefix}{i}",
            "timestamp": T0 + timedelta(seconds=(i * 37) % 7200),
            "score": (i % 97 + 1) / 100,
        }
        for i in range(start, start + n)
    ]


def acts(n: int, prefix: str = "p") -> list[dict[str, Any]]:
    return [{"prediction_id": f"{prefix}{i}", "label": i % 2} for i in range(n)]


def test_batches_to_max_batch_and_sums_results(db: Db, proxy: Proxy) -> None:
    with Client(proxy.url, max_batch=10_000) as lm:
        assert lm.put_model("ctr", window="1h")["window"] == "1h"
        assert lm.log_predictions("ctr", preds(25_000)) == IngestResult(25_000, 0)
        assert [b.items for b in proxy.batches("predictions")] == [10_000, 10_000, 5_000]
        assert db.count("predictions") == 25_000
        # Actuals are batched the same way; 10 of them have no prediction (yet).
        labels = acts(24_990) + [{"prediction_id": f"later{i}", "label": 1} for i in range(10)]
        assert lm.log_actuals("ctr", labels) == ActualsResult(25_000, 24_990, 10)
        assert [b.items for b in proxy.batches("actuals")] == [10_000, 10_000, 5_000]
        assert db.count("actuals") == 25_000
        # Generators work too, and an empty input sends nothing.
        assert lm.log_predictions("ctr", iter(preds(3, prefix="g"))) == IngestResult(3, 0)
        assert lm.log_predictions("ctr", []) == IngestResult(0, 0)
        assert len(proxy.batches("predictions")) == 4


def test_413_from_a_lower_server_cap_is_split(db: Db, tmp_path: Path) -> None:
    server = start_server(db.url, tmp_path, extra_env={"LOSSMON_MAX_BATCH_ITEMS": "100"})
    proxy = Proxy(server.url)
    try:
        with Client(proxy.url, max_batch=1_000) as lm:
            lm.put_model("ctr")
            assert lm.log_predictions("ctr", preds(2_500)) == IngestResult(2_500, 0)
            assert lm.batch_size <= 100  # learned, kept for the next calls
            sent = proxy.batches("predictions")
            # 1000 -> 500 -> 250 -> 125 refused; then batches of 62 go through.
            assert [(s.items, s.answered) for s in sent[:4]] == [
                (1000, 413),
                (500, 413),
                (250, 413),
                (125, 413),
            ]
            assert all(s.answered == 200 for s in sent[4:])
            assert sum(s.items or 0 for s in sent[4:]) == 2_500
            assert max(s.items or 0 for s in sent[4:]) == 62
            assert db.count("predictions") == 2_500
            # The next call starts at the learned size: no more 413s.
            before = len(proxy.batches("predictions"))
            assert lm.log_actuals("ctr", acts(1_000)).matched == 1_000
            assert all(s.answered == 200 for s in proxy.seen[before:])
    finally:
        proxy.close()
        stop_server(server)


def test_retries_503_and_lost_responses_idempotently(db: Db, proxy: Proxy) -> None:
    with Client(proxy.url, backoff_s=0.01) as lm:
        lm.put_model("ctr")
        proxy.script(503, 503)  # with Retry-After: 0, then forwarded
        assert lm.log_predictions("ctr", preds(100)) == IngestResult(100, 0)
        assert [s.answered for s in proxy.batches("predictions")] == [503, 503, 200]

        # Stored by the server, but the response is lost: the retry finds duplicates.
        proxy.script("drop")
        assert lm.log_predictions("ctr", preds(50, start=100)) == IngestResult(0, 50)
        assert [s.answered for s in proxy.batches("predictions")][-2:] == ["dropped", 200]
        assert db.count("predictions") == 150
        # A plain re-send is all duplicates.
        assert lm.log_predictions("ctr", preds(150)) == IngestResult(0, 150)

        proxy.script(503)
        assert lm.log_actuals("ctr", acts(150)) == ActualsResult(150, 150, 0)
        proxy.script("drop")  # actuals are last-write-wins: re-sending is harmless
        assert lm.log_actuals("ctr", acts(150)) == ActualsResult(150, 150, 0)
        assert db.count("actuals") == 150

    with Client(proxy.url, retries=2, backoff_s=0.01) as lm:
        proxy.script(503, 503, 503)
        with pytest.raises(Unavailable) as info:
            lm.log_predictions("ctr", preds(1))
        assert info.value.status_code == 503
        assert "gave up after 3 attempts" in str(info.value)

    # Nothing listening: connection refused, retried, then Unavailable.
    with Client(f"http://127.0.0.1:{free_port()}", retries=1, backoff_s=0.01) as lm:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="ConnectError"):
            lm.log_predictions("ctr", preds(1))
        assert time.monotonic() - started < 5


def test_clear_errors_for_404_and_422(db: Db, proxy: Proxy) -> None:
    with Client(proxy.url, max_batch=10) as lm:
        with pytest.raises(NotFound) as info:
            lm.log_predictions("nope", preds(1))
        assert info.value.status_code == 404
        assert "'nope' is not registered" in str(info.value)
        assert "PUT /v1/models/nope" in str(info.value)

        lm.put_model("ctr")
        items = preds(25)
        items[23]["score"] = 1.5
        with pytest.raises(ValidationFailed) as vinfo:
            lm.log_predictions("ctr", items)
        err = vinfo.value
        assert [(e["index"], e["field"]) for e in err.errors] == [(23, "score")]
        assert "item 23: score" in str(err)
        assert err.stored_before == 20
        assert db.count("predictions") == 20  # two good batches stored, the bad one not

        # A timestamp without offset sent as a string: the server's message, our index.
        items = preds(15, prefix="s")
        items[12]["timestamp"] = "2026-11-20T10:00:00"
        with pytest.raises(ValidationFailed) as vinfo:
            lm.log_predictions("ctr", items)
        assert vinfo.value.errors[0]["index"] == 12
        assert "offset" in vinfo.value.errors[0]["message"]

        # A naive datetime is refused before anything is sent.
        sent = len(proxy.seen)
        items = preds(15, prefix="n")
        items[14]["timestamp"] = datetime(2026, 11, 20, 10, 0)
        with pytest.raises(ValueError, match="item 14, field 'timestamp': naive datetime"):
            lm.log_predictions("ctr", items)
        items[14]["timestamp"] = T0
        items[3]["score"] = float("nan")
        with pytest.raises(ValueError, match="item 3, field 'score'"):
            lm.log_predictions("ctr", items)
        with pytest.raises(ValueError, match="naive"):
            lm.metrics("ctr", start=datetime(2026, 11, 20))
        assert len(proxy.seen) == sent


def test_metrics_monitors_and_alerts(db: Db, proxy: Proxy) -> None:
    with Client(proxy.url) as lm:
        lm.put_model("ctr", window="1h", description="CTR")
        items = preds(200)
        for i, item in enumerate(items):
            item["segments"] = {"country": "DE" if i % 2 else "FR"}
            item["model_version"] = "v2"
        lm.log_predictions("ctr", items)
        lm.log_actuals("ctr", acts(200))
        jobs.tick(settings=db.settings, factory=db.factory, read_factory=db.read_factory)

        windows = lm.metrics("ctr", start=T0, end=T0 + timedelta(days=1))
        assert [w["start"] for w in windows] == ["2026-11-20T00:00:00Z", "2026-11-20T01:00:00Z"]
        assert sum(w["labeled"] for w in windows) == 200
        assert lm.metrics("ctr", start=T0 + timedelta(hours=1)) == windows[1:]
        de = lm.metrics("ctr", model_version="v2", segments={"country": "DE"})
        assert sum(w["predictions"] for w in de) == 100
        assert lm.metrics("ctr", segments=["country:XX"]) == []

        monitor = lm.create_monitor(
            "ctr",
            name="ctr-degrading",
            rule={
                "type": "relative_to_reference",
                "reference_start": T0,
                "reference_end": T0 + timedelta(days=1),
                "max_increase": 0.1,
            },
            min_labeled=50,
        )
        assert monitor["rule"]["reference_start"].startswith("2026-11-20T00:00:00")
        assert monitor["webhook_secret"] is None
        assert lm.alerts(model_id="ctr") == []
        assert lm.alerts(state="firing") == []
        with pytest.raises(NotFound):
            lm.alert("alert_nope")


def test_auth_errors_and_rate_limit(db: Db, tmp_path: Path) -> None:
    server = start_server(db.url, tmp_path, extra_env={"LOSSMON_RATE_LIMIT": "5/hour"})
    try:
        now = datetime.now(UTC)
        with session_scope(db.factory) as session:
            admin = create_key(session=session, scope="admin", name="a", now=now).key
            ingest = create_key(session=session, scope="ingest", name="i", now=now).key
            read = create_key(session=session, scope="read", name="r", now=now).key
        with Client(server.url, admin) as lm:
            lm.put_model("ctr")
        for key in (None, "lm_0000_wrong", ingest[:-2] + "xx"):
            with Client(server.url, key) as lm, pytest.raises(AuthError) as info:
                lm.log_predictions("ctr", preds(1))
            assert info.value.status_code == 401
        with Client(server.url, read) as lm, pytest.raises(AuthError) as info:
            lm.log_predictions("ctr", preds(1))
        assert info.value.status_code == 403
        assert "needs 'ingest'" in str(info.value)
        with Client(server.url, ingest) as lm:
            assert lm.log_predictions("ctr", preds(10)) == IngestResult(10, 0)
            for _ in range(4):
                lm.log_predictions("ctr", preds(1))
            # Over the limit: Retry-After is ~an hour, longer than the client waits.
            started = time.monotonic()
            with pytest.raises(RateLimited) as rinfo:
                lm.log_predictions("ctr", preds(1))
            assert time.monotonic() - started < 5
            assert rinfo.value.status_code == 429
            assert rinfo.value.retry_after is not None and rinfo.value.retry_after > 60
    finally:
        stop_server(server)


def test_compare_champion_and_challenger(db: Db, proxy: Proxy) -> None:
    with Client(proxy.url) as lm:
        for model in ("champ", "chall"):
            lm.put_model(model, window="1h")
        items = preds(100)
        lm.log_predictions("champ", items)
        # The challenger is sharper on the same ids: closer to the 0/1 labels.
        lm.log_predictions(
            "chall",
            [{**p, "score": 0.9 if i % 2 else 0.1} for i, p in enumerate(items)],
        )
        lm.log_actuals("champ", acts(100))
        result = lm.compare("champ", "chall", start=T0, end=T0 + timedelta(days=1))
        assert result["paired"] is True
        assert result["overall"]["n"] == 100
        assert result["overall"]["difference"] < 0  # b beats a
        assert len(result["windows"]) == 2
        with pytest.raises(NotFound):
            lm.compare("champ", "nope")
