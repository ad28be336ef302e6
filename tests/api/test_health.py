"""/healthz and /readyz."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import migrate
from app.config import load_settings
from app.main import create_app
from tests.conftest import Db


def test_healthz_and_readyz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["schema"] == migrate.head_revision()


def test_readyz_503_when_schema_behind(db: Db) -> None:
    migrate.downgrade(db.url, "base")
    try:
        with TestClient(create_app(db.settings)) as client:
            r = client.get("/readyz")
            assert r.status_code == 503
            assert "lossmon migrate" in r.json()["detail"]
            assert client.get("/healthz").status_code == 200
    finally:
        migrate.upgrade(db.url)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_readyz_503_when_database_unreachable(kind: str, tmp_path: Path) -> None:
    unreachable = {
        # A file in a directory that does not exist: SQLite cannot open it.
        "sqlite": f"sqlite:///{tmp_path / 'gone' / 'lossmon.db'}",
        # A loopback port where nothing listens.
        "postgresql": "postgresql+psycopg://postgres@127.0.0.1:1/nothing",
    }[kind]
    settings = load_settings(database_url=unreachable)
    with TestClient(create_app(settings)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        assert r.json()["detail"] == "database unreachable"
        # Writes answer 503 with Retry-After, never 500 and never a false 200.
        w = client.put("/v1/models/ctr", json={})
        assert w.status_code == 503
        assert w.headers["retry-after"]
