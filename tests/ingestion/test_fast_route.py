"""The fast predictions route (app/ingestion/fast_route.py) against the FastAPI route it
stands in front of: the same requests, sent once through each (the database emptied in
between), get the same answers and store the same rows, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.auth import service as auth_service
from app.db import session_scope
from app.ingestion.fast_route import FastPredictionsRoute
from app.main import create_app
from tests.conftest import Db

MAX_BATCH = 200


def _key(db: Db, scope: str) -> str:
    with session_scope(db.factory) as session:
        return auth_service.create_key(
            session=session,
            scope=scope,  # type: ignore[arg-type]
            name=scope,
            now=datetime.now(UTC),
        ).key


def _fast_route(app: FastAPI) -> FastPredictionsRoute:
    (route,) = [r for r in app.router.routes if isinstance(r, FastPredictionsRoute)]
    return route


def _without_fast_route(app: FastAPI) -> FastAPI:
    app.router.routes.remove(_fast_route(app))
    return app


def _records(n: int, prefix: str, **extra: Any) -> list[dict[str, Any]]:
    zones = ["Z", "+01:00", "-05:30"]
    return [
        {
            "prediction_id": f"{prefix}{i:04d}",
            "timestamp": f"2026-11-20T10:{i % 60:02d}:00.{i:06d}{zones[i % 3]}",
            "score": i / max(n, 1),
            "model_version": "v1",
            "segments": {"country": "DE"} if i % 2 else {"device": "ios", "country": "FR"},
            **extra,
        }
        for i in range(n)
    ]


def _body(records: list[dict[str, Any]]) -> bytes:
    return json.dumps({"predictions": records}).encode()


# (name, path, headers key ("ingest", "read", "none", "basic", "wrong"), extra headers
# (None: not sent), body)
CASES: list[tuple[str, str, str, dict[str, str | None], bytes]] = [
    ("batch", "/v1/models/m/predictions", "ingest", {}, _body(_records(100, "a"))),
    ("re-sent", "/v1/models/m/predictions", "ingest", {}, _body(_records(100, "a"))),
    ("small", "/v1/models/m/predictions", "ingest", {}, _body(_records(3, "b"))),
    ("repeat-in-batch", "/v1/models/m/predictions", "ingest", {},
     _body(_records(2, "c") + _records(2, "c"))),
    ("no-timestamp", "/v1/models/m/predictions", "ingest", {},
     _body([{"prediction_id": "d", "score": 0.5}])),
    ("no-key", "/v1/models/m/predictions", "none", {}, _body(_records(2, "e"))),
    ("wrong-key", "/v1/models/m/predictions", "wrong", {}, _body(_records(2, "e"))),
    ("basic-auth", "/v1/models/m/predictions", "basic", {}, _body(_records(2, "e"))),
    ("read-scope", "/v1/models/m/predictions", "read", {}, _body(_records(2, "e"))),
    ("unknown-model", "/v1/models/nope/predictions", "ingest", {}, _body(_records(2, "e"))),
    ("model-id-pattern", "/v1/models/bad%20id/predictions", "ingest", {}, _body(_records(2, "e"))),
    ("too-many", "/v1/models/m/predictions", "ingest", {}, _body(_records(MAX_BATCH + 1, "f"))),
    ("in-2099", "/v1/models/m/predictions", "ingest", {},
     _body([{"prediction_id": "g", "score": 0.5, "timestamp": "2099-01-01T00:00:00Z"}])),
    ("no-score", "/v1/models/m/predictions", "ingest", {}, _body([{"prediction_id": "h"}])),
    ("score-1.5", "/v1/models/m/predictions", "ingest", {},
     _body([{"prediction_id": "h", "score": 1.5}])),
    ("escaped", "/v1/models/m/predictions", "ingest", {},
     _body([{"prediction_id": "i\u00e9\\", "score": 0.5}])),
    ("text-plain", "/v1/models/m/predictions", "ingest", {"content-type": "text/plain"},
     _body(_records(2, "j"))),
    ("json-charset", "/v1/models/m/predictions", "ingest",
     {"content-type": "application/json; charset=utf-8"}, _body(_records(2, "k"))),
    ("no-content-type", "/v1/models/m/predictions", "ingest", {"content-type": None},
     _body(_records(2, "l"))),
    ("vnd-json", "/v1/models/m/predictions", "ingest",
     {"content-type": "application/vnd.lossmon+json"}, _body(_records(2, "m"))),
    ("malformed", "/v1/models/m/predictions", "ingest", {}, b'{"predictions": ['),
    ("empty", "/v1/models/m/predictions", "ingest", {}, b""),
]  # fmt: skip


@contextmanager
def _client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as client:
        yield client


def _answers(db: Db, app: FastAPI, keys: dict[str, str]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    with _client(app) as client:
        for name, path, key, extra, body in CASES:
            headers = {k: v for k, v in {"content-type": "application/json", **extra}.items() if v}
            if key in keys:
                headers["authorization"] = keys[key]
            r = client.post(path, content=body, headers=headers)
            shown = {k: v for k, v in r.headers.items() if k not in ("x-request-id", "date")}
            # The 2099 refusal names the server's clock: a second apart between the runs.
            content = re.sub(rb"accepted now: [^;]+;", b"accepted now: ...;", r.content)
            out.append((name, r.status_code, shown, content))
        r = client.get("/v1/models/m/predictions", headers={"authorization": keys["ingest"]})
        out.append(("get", r.status_code, dict(r.headers) | {"x-request-id": ""}, r.content))
    return out


def _stored(db: Db) -> list[tuple[Any, ...]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT prediction_id, ts_us, window_start, score, model_version, segments "
                "FROM predictions ORDER BY prediction_id"
            )
        ).all()
    # Sent without a timestamp: stored at the time received.
    return [(r[0], "received", *r[3:]) if r[0] in _UNDATED else tuple(r) for r in rows]


_UNDATED = {"d", "i\u00e9\\"}


def _empty(db: Db) -> None:
    with db.engine.begin() as conn:
        for table in ("predictions", "window_changes", "dirty_windows"):
            conn.execute(text(f"DELETE FROM {table}"))


@pytest.mark.parametrize("rate_limit", ["", "1000/minute"])
def test_both_routes_answer_alike_and_store_alike(db: Db, rate_limit: str) -> None:
    keys = {scope: f"Bearer {_key(db, scope)}" for scope in ("ingest", "read", "admin")} | {
        "wrong": "Bearer lm_000000000000_" + "x" * 43,
        "basic": "Basic dXNlcjpwYXNz",
    }
    settings = db.settings_with(max_batch_items=MAX_BATCH, rate_limit=rate_limit)
    fast_app = create_app(settings)
    with _client(fast_app) as admin:
        headers = {"authorization": keys["admin"]}
        assert admin.put("/v1/models/m", json={"window": "1h"}, headers=headers).is_success

    fast = _answers(db, fast_app, keys)
    fast_rows = _stored(db)
    route = _fast_route(fast_app)
    # Taken: the bodies the fast decoder reads (then stored, or refused by the key check,
    # the model, the batch cap or the service); handed on: the other eight. The GET never
    # matches it.
    assert route.taken == 14
    assert route.handed_on == 8
    _empty(db)
    plain = _answers(db, _without_fast_route(create_app(settings)), keys)

    assert [a[:2] for a in fast] == [a[:2] for a in plain]  # statuses first: a readable diff
    assert fast == plain
    assert _stored(db) == fast_rows
    statuses = {a[0]: a[1] for a in fast}
    assert statuses["batch"] == statuses["small"] == statuses["escaped"] == 200
    assert json.loads(fast[1][3]) == {"accepted": 0, "duplicates": 100}
    assert {statuses[n] for n in ("no-key", "wrong-key", "basic-auth")} == {401}
    assert (statuses["read-scope"], statuses["unknown-model"], statuses["too-many"]) == (
        403,
        404,
        413,
    )
    # batch, small, repeat-in-batch, no-timestamp, escaped, json-charset, vnd-json
    assert len(fast_rows) == 100 + 3 + 2 + 1 + 1 + 2 + 2
    assert statuses["no-content-type"] == 422  # FastAPI's strict_content_type


def test_the_fast_route_is_not_in_the_openapi_schema(db: Db) -> None:
    with_route = create_app(db.settings)
    without = _without_fast_route(create_app(db.settings))
    assert with_route.openapi() == without.openapi()


def test_the_metrics_name_the_route_template(client: TestClient) -> None:
    assert client.put("/v1/models/m", json={"window": "1h"}).is_success
    r = client.post("/v1/models/m/predictions", json={"predictions": _records(2, "a")})
    assert r.status_code == 200
    assert _fast_route(client.app).taken == 1  # type: ignore[arg-type]
    metrics = client.get("/metrics").text
    assert (
        'lossmon_http_requests_total{method="POST",route="/v1/models/{model_id}/predictions",'
        'status="200"} 1.0' in metrics
    )
