"""Timestamp bounds (API.md "Time bounds and faults"): prediction and actual timestamps
lie in [1970-01-01T00:00:00Z, now + LOSSMON_MAX_FUTURE_S]; outside is a 422 naming the
record, and nothing of the batch is stored. Through a real `lossmon serve`."""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.ingestion import time_bounds
from app.windows import history_json
from tests.conftest import Db, Server, start_server, stop_server

MAX_FUTURE_S = 3600


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@pytest.fixture
def bounded_server(db: Db, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(db.url, tmp_path, extra_env={"LOSSMON_MAX_FUTURE_S": str(MAX_FUTURE_S)})
    yield srv
    stop_server(srv)


def _post(server: Server, kind: str, items: list[dict[str, Any]]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/models/ctr/{kind}", json={kind: items}, timeout=10)


def test_out_of_range_timestamps_are_422_naming_the_record(db: Db, bounded_server: Server) -> None:
    assert httpx.put(f"{bounded_server.url}/v1/models/ctr", json={}).status_code == 200
    now = datetime.now(UTC)
    ok = _iso(now - timedelta(hours=1))
    bad = {
        "year 1 with an offset": "0001-01-01T00:30:00+01:00",
        "just before the epoch": "1969-12-31T23:59:59Z",
        "beyond LOSSMON_MAX_FUTURE_S": _iso(now + timedelta(seconds=2 * MAX_FUTURE_S)),
        "far future with an offset": "9999-12-31T22:00:00-01:00",
    }
    for why, ts in bad.items():
        items = [
            {"prediction_id": "fine", "timestamp": ok, "score": 0.5},
            {"prediction_id": "odd", "timestamp": ts, "score": 0.5},
        ]
        r = _post(bounded_server, "predictions", items)
        assert r.status_code == 422, (why, r.text)
        [error] = r.json()["detail"]
        assert (error["index"], error["field"]) == (1, "timestamp"), (why, error)
        assert ("1970" in error["message"]) or ("LOSSMON_MAX_FUTURE_S" in error["message"])

        actuals = [
            {"prediction_id": "fine", "label": 1, "timestamp": ok},
            {"prediction_id": "odd", "label": 0, "timestamp": ts},
        ]
        r = _post(bounded_server, "actuals", actuals)
        assert r.status_code == 422, (why, r.text)
        assert [(e["index"], e["field"]) for e in r.json()["detail"]] == [(1, "timestamp")]
    assert db.count("predictions") == 0
    assert db.count("actuals") == 0

    # The edges are inside: the epoch itself, and a little less than max_future ahead.
    edge = [
        {"prediction_id": "epoch", "timestamp": "1970-01-01T00:00:00Z", "score": 0.5},
        {
            "prediction_id": "soon",
            "timestamp": _iso(now + timedelta(seconds=MAX_FUTURE_S - 60)),
            "score": 0.5,
        },
    ]
    r = _post(bounded_server, "predictions", edge)
    assert r.status_code == 200, r.text
    assert db.count("predictions") == 2


def test_every_returned_window_has_a_four_digit_year() -> None:
    start = calendar.timegm((5, 1, 1, 0, 0, 0))  # year 5, stored by an older version
    assert history_json.iso_seconds(start) == "0005-01-01T00:00:00Z"
    assert history_json.iso_seconds(0) == "1970-01-01T00:00:00Z"


def test_bounds_are_a_pure_function_of_the_clock() -> None:
    now_us = 1_795_132_800_000_000
    errors = time_bounds.out_of_range(
        [None, 0, -1, now_us + 10_000_000, now_us + 10_000_001], now_us=now_us, max_future_s=10
    )
    assert [e["index"] for e in errors] == [2, 4]
