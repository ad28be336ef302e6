"""Every /v1 route x {no key, wrong key, revoked key, each scope}: 401/403/allowed
exactly as API.md "Auth" says. Routes are enumerated from the app, so a new route
without a scope in REQUIRED fails this test."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from app.auth import service as auth_service
from app.db import session_scope
from app.main import create_app
from tests.conftest import Db

# (method, path template) -> scope needed
REQUIRED: dict[tuple[str, str], str] = {
    ("PUT", "/v1/models/{model_id}"): "admin",
    ("GET", "/v1/models"): "read",
    ("GET", "/v1/models/{model_id}"): "read",
    ("DELETE", "/v1/models/{model_id}"): "admin",
    ("GET", "/v1/models/{model_id}/storage"): "read",
    ("POST", "/v1/models/{model_id}/predictions"): "ingest",
    ("POST", "/v1/models/{model_id}/actuals"): "ingest",
    ("GET", "/v1/models/{model_id}/metrics"): "read",
    ("POST", "/v1/models/{model_id}/monitors"): "admin",
    ("GET", "/v1/models/{model_id}/monitors"): "read",
    ("GET", "/v1/models/{model_id}/monitors/{monitor_id}"): "read",
    ("PUT", "/v1/models/{model_id}/monitors/{monitor_id}"): "admin",
    ("DELETE", "/v1/models/{model_id}/monitors/{monitor_id}"): "admin",
    ("GET", "/v1/alerts"): "read",
    ("GET", "/v1/alerts/{alert_id}"): "read",
    ("GET", "/v1/compare"): "read",
    ("GET", "/v1/models/{model_id}/spark-job"): "admin",
    ("PUT", "/v1/models/{model_id}/spark-windows"): "admin",
}


def _routes() -> list[tuple[str, str]]:
    paths = create_app().openapi()["paths"]
    return [
        (method.upper(), path)
        for path, ops in paths.items()
        if path.startswith("/v1")
        for method in ops
    ]


def _url(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: {"model_id": "ctr"}.get(m.group(1), "x"), path)


def _key(db: Db, scope: str) -> tuple[str, str]:
    with session_scope(db.factory) as session:
        new = auth_service.create_key(
            session=session,
            scope=scope,  # type: ignore[arg-type]
            name=scope,
            now=datetime.now(UTC),
        )
    return new.key_id, new.key


def test_every_v1_route_has_a_scope() -> None:
    assert set(_routes()) == set(REQUIRED)


@pytest.fixture
def keys(db: Db) -> dict[str, str]:
    out = {scope: _key(db, scope)[1] for scope in ("ingest", "read", "admin")}
    revoked_id, revoked = _key(db, "admin")
    with session_scope(db.factory) as session:
        auth_service.revoke(session=session, key_id=revoked_id, now=datetime.now(UTC))
    out["revoked"] = revoked
    out["wrong"] = "lm_000000000000_" + "x" * 43
    out["garbage"] = "not-a-key"
    return out


def test_auth_matrix(client: TestClient, keys: dict[str, str]) -> None:
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    assert client.put("/v1/models/ctr", json={}, headers=admin).status_code == 200
    failures = []
    for method, path in _routes():
        needed = REQUIRED[(method, path)]
        url = _url(path)
        cases: dict[str, dict[str, str]] = {"none": {}}
        cases.update({name: {"Authorization": f"Bearer {k}"} for name, k in keys.items()})
        cases["basic"] = {"Authorization": "Basic dXNlcjpwYXNz"}
        for name, headers in cases.items():
            r = client.request(method, url, headers=headers, json={} if method != "GET" else None)
            if name in ("ingest", "read", "admin"):
                allowed = name == "admin" or name == needed
                ok = r.status_code not in (401, 403) if allowed else r.status_code == 403
            else:
                ok = r.status_code == 401 and r.headers.get("www-authenticate") == "Bearer"
            if not ok:
                failures.append((method, path, name, r.status_code, r.text[:120]))
            assert r.status_code < 400 or "detail" in r.json()
            if (method, r.status_code) == ("DELETE", 204):
                # The admin just deleted it: every later case must meet the model again.
                assert client.put("/v1/models/ctr", json={}, headers=admin).status_code == 200
    assert failures == []


def test_open_when_no_key_exists(client: TestClient) -> None:
    assert client.put("/v1/models/ctr", json={}).status_code == 200
    assert client.get("/v1/models").status_code == 200


def test_keys_are_stored_hashed_only(db: Db, keys: dict[str, str]) -> None:
    from sqlalchemy import text

    with db.engine.connect() as conn:
        rows = [tuple(map(str, r)) for r in conn.execute(text("SELECT * FROM api_keys")).all()]
    dump = repr(rows)
    for name in ("ingest", "read", "admin", "revoked"):
        secret_part = keys[name].split("_", 2)[2]
        assert secret_part not in dump
        assert keys[name] not in dump
