"""DELETE /v1/models/{id} and pagination (API.md "Models: lifecycle"), over HTTP on
SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import text

from app.main import create_app
from tests.alerting.test_lifecycle import BAD, GOOD, make_monitor, post_window, tick
from tests.conftest import TABLES, Db
from tests.notify.conftest import webhook_settings
from tests.notify.receiver import Receiver


def _rows_per_table(db: Db, model_id: str) -> dict[str, int]:
    """Rows that belong to `model_id`, per table (through monitors/alerts where a table
    has no model_id of its own)."""
    out: dict[str, int] = {}
    with db.engine.connect() as conn:
        for table in TABLES:
            columns = {
                c[1] if db.kind == "sqlite" else c[0]
                for c in conn.execute(
                    text(f"PRAGMA table_info({table})")
                    if db.kind == "sqlite"
                    else text(
                        "SELECT column_name FROM information_schema.columns "
                        "WHERE table_name = :t AND table_schema = current_schema()"
                    ).bindparams(t=table)
                )
            }
            if table == "models":
                query = "SELECT count(*) FROM models WHERE id = :m"
            elif "model_id" in columns:
                query = f"SELECT count(*) FROM {table} WHERE model_id = :m"
            elif "monitor_id" in columns:
                query = (
                    f"SELECT count(*) FROM {table} t JOIN monitors m ON m.id = t.monitor_id "
                    "WHERE m.model_id = :m"
                )
            elif "alert_id" in columns:
                query = (
                    f"SELECT count(*) FROM {table} t JOIN alerts a ON a.id = t.alert_id "
                    "WHERE a.model_id = :m"
                )
            else:
                continue  # not a per-model table (api_keys)
            out[table] = conn.execute(text(query), {"m": model_id}).scalar_one()
    return out


def test_delete_model_removes_data_monitors_and_alerts(db: Db, receiver: Receiver) -> None:
    settings = webhook_settings(db)
    with TestClient(create_app(settings)) as client:
        for model_id in ("ctr", "other"):
            assert client.put(f"/v1/models/{model_id}", json={"window": "1h"}).status_code == 200
        make_monitor(client, receiver, for_windows=1)
        for w, quality in enumerate([GOOD, BAD, BAD]):
            post_window(client, w, quality)
        # A second model with the same shape of data must survive the delete untouched.
        preds = [{"prediction_id": f"o{i}", "score": 0.3} for i in range(5)]
        assert client.post("/v1/models/other/predictions", json={"predictions": preds}).is_success
        post_window(client, 3, BAD, labeled=10)  # a dirty window still pending
        tick(db, settings)
        post_window(client, 4, GOOD, labeled=0)  # and one never computed
        assert client.get("/v1/alerts", params={"model_id": "ctr"}).json()["alerts"]

        before = _rows_per_table(db, "ctr")
        for table in ("predictions", "actuals", "window_metrics", "monitors", "alerts"):
            assert before[table] > 0, (table, before)
        assert before["webhook_deliveries"] > 0
        other_before = _rows_per_table(db, "other")

        r = client.delete("/v1/models/ctr")
        assert r.status_code == 204, r.text
        assert r.content == b""

        assert all(n == 0 for n in _rows_per_table(db, "ctr").values()), _rows_per_table(db, "ctr")
        assert _rows_per_table(db, "other") == other_before
        assert client.get("/v1/models/ctr").status_code == 404
        assert client.get("/v1/models/ctr/metrics").status_code == 404
        assert client.get("/v1/alerts", params={"model_id": "ctr"}).json()["alerts"] == []
        assert client.delete("/v1/models/ctr").status_code == 404
        assert [m["model_id"] for m in client.get("/v1/models").json()["models"]] == ["other"]
        # A tick after the delete has nothing left of it to compute or send.
        report = tick(db, settings)
        assert report.compute.computed == 0
        # The id is free again: a new model starts empty.
        assert client.put("/v1/models/ctr", json={"window": "15m"}).status_code == 200
        assert client.get("/v1/models/ctr/metrics").json()["windows"] == []


def test_delete_unknown_model_is_404(client: TestClient) -> None:
    r = client.delete("/v1/models/nope")
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]


def _all_pages(client: TestClient, path: str, field: str, **params: Any) -> list[list[Any]]:
    pages: list[list[Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = client.get(path, params=query)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append(body[field])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 1000, "pagination does not end"


def test_metrics_pages_return_every_window_exactly_once(db: Db) -> None:
    settings = webhook_settings(db)
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/models/ctr", json={"window": "1h"}).status_code == 200
        n_windows = 23
        for w in range(n_windows):
            post_window(client, w, GOOD if w % 3 else BAD, n=4)
        tick(db, settings)
        whole = client.get("/v1/models/ctr/metrics").json()
        assert whole["next_cursor"] is None
        starts = [w["start"] for w in whole["windows"]]
        assert len(starts) == n_windows

        for limit in (1, 2, 5, 7, 22, 23, 24):
            pages = _all_pages(client, "/v1/models/ctr/metrics", "windows", limit=limit)
            assert all(len(p) == limit for p in pages[:-1])
            assert 1 <= len(pages[-1]) <= limit
            assert [w for p in pages for w in p] == whole["windows"], limit
        # With a range, pages stay inside it; with a filter, pages cover the filtered history.
        ranged = _all_pages(
            client,
            "/v1/models/ctr/metrics",
            "windows",
            limit=4,
            start=starts[3],
            end=starts[17],
        )
        assert [w["start"] for p in ranged for w in p] == starts[3:17]
        filtered = client.get("/v1/models/ctr/metrics", params={"model_version": ""}).json()
        paged = _all_pages(client, "/v1/models/ctr/metrics", "windows", limit=6, model_version="")
        assert [w for p in paged for w in p] == filtered["windows"]
        assert len(filtered["windows"]) == n_windows


def test_models_pages_return_every_model_exactly_once(client: TestClient) -> None:
    ids = sorted(f"m{i:03d}" for i in range(37))
    for model_id in ids:
        assert client.put(f"/v1/models/{model_id}", json={}).status_code == 200
    assert client.get("/v1/models").json()["next_cursor"] is None
    for limit in (1, 5, 36, 37, 100):
        pages = _all_pages(client, "/v1/models", "models", limit=limit)
        assert [m["model_id"] for p in pages for m in p] == ids
        assert all(len(p) == limit for p in pages[:-1])
    # A model added behind the cursor mid-way is not repeated; one ahead of it appears.
    first = client.get("/v1/models", params={"limit": 10}).json()
    client.put("/v1/models/a-first", json={})
    client.put("/v1/models/z-last", json={})
    rest = _all_pages(client, "/v1/models", "models", limit=10, cursor=first["next_cursor"])
    seen = [m["model_id"] for m in first["models"]] + [m["model_id"] for p in rest for m in p]
    assert seen == [*ids, "z-last"]


def test_bad_cursor_and_limit_are_422(client: TestClient) -> None:
    client.put("/v1/models/ctr", json={})
    for path in ("/v1/models", "/v1/models/ctr/metrics"):
        for params in ({"cursor": "garbage!"}, {"cursor": ""}, {"limit": 0}, {"limit": 10_001}):
            r = client.get(path, params=params)
            assert r.status_code == 422, (path, params, r.text)
    # A cursor of one list is refused by the other.
    for model_id in ("a", "b"):
        client.put(f"/v1/models/{model_id}", json={})
    models_cursor = client.get("/v1/models", params={"limit": 1}).json()["next_cursor"]
    r = client.get("/v1/models/ctr/metrics", params={"cursor": models_cursor})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "cursor"
