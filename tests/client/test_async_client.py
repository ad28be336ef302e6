"""lossmon.AsyncClient against a real `lossmon serve` (SQLite and PostgreSQL) through the
counting proxy: the same batching, 413 split, retries and errors as Client."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from lossmon import ActualsResult, AsyncClient, IngestResult, NotFound, ValidationFailed

from tests.client.proxy import Proxy
from tests.client.test_client import T0, acts, preds
from tests.conftest import Db, Server, start_server, stop_server


@pytest.fixture
def proxy(server: Server) -> Iterator[Proxy]:
    p = Proxy(server.url)
    yield p
    p.close()


def test_async_client_batches_retries_and_raises_like_client(db: Db, proxy: Proxy) -> None:
    async def scenario() -> None:
        async with AsyncClient(proxy.url, max_batch=10, backoff_s=0.01) as lm:
            assert (await lm.put_model("ctr", window="1h"))["window"] == "1h"
            assert (await lm.get_model("ctr"))["model_id"] == "ctr"
            proxy.script(503)
            assert await lm.log_predictions("ctr", preds(25)) == IngestResult(25, 0)
            assert [(b.items, b.answered) for b in proxy.batches("predictions")] == [
                (10, 503),
                (10, 200),
                (10, 200),
                (5, 200),
            ]
            assert await lm.log_actuals("ctr", acts(25)) == ActualsResult(25, 25, 0)
            # Concurrent calls share one connection pool.
            results = await asyncio.gather(
                *(lm.log_predictions("ctr", preds(5, prefix=f"c{k}-")) for k in range(4))
            )
            assert results == [IngestResult(5, 0)] * 4

            items = preds(15, prefix="bad")
            items[12]["score"] = 1.5
            with pytest.raises(ValidationFailed) as info:
                await lm.log_predictions("ctr", items)
            assert [(e["index"], e["field"]) for e in info.value.errors] == [(12, "score")]
            assert info.value.stored_before == 10
            with pytest.raises(NotFound):
                await lm.metrics("nope")
            assert await lm.metrics("ctr", start=T0, end=T0 + timedelta(days=1)) == []
            assert await lm.alerts(model_id="ctr") == []
            with pytest.raises(ValueError, match="naive"):
                await lm.metrics("ctr", start=datetime(2026, 11, 20))

    asyncio.run(scenario())
    assert db.count("predictions") == 25 + 20 + 10


def test_async_client_learns_a_lower_server_cap(db: Db, tmp_path: Path) -> None:
    server = start_server(db.url, tmp_path, extra_env={"LOSSMON_MAX_BATCH_ITEMS": "100"})

    async def scenario() -> None:
        async with AsyncClient(server.url, max_batch=1_000) as lm:
            await lm.put_model("ctr")
            assert await lm.log_predictions("ctr", preds(500)) == IngestResult(500, 0)
            assert lm.batch_size <= 100

    try:
        asyncio.run(scenario())
        assert db.count("predictions") == 500
    finally:
        stop_server(server)
