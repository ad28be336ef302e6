"""Per-key rate limit: 429 with Retry-After for the key over its budget; other keys
unaffected."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from app.auth import service as auth_service
from app.db import session_scope
from app.main import create_app
from tests.conftest import Db


def _key(db: Db, scope: str) -> str:
    with session_scope(db.factory) as session:
        return auth_service.create_key(
            session=session,
            scope=scope,  # type: ignore[arg-type]
            name="t",
            now=datetime.now(UTC),
        ).key


def test_rate_limit_is_per_key(db: Db) -> None:
    hot, cold = _key(db, "read"), _key(db, "read")
    with TestClient(create_app(db.settings_with(rate_limit="5/minute"))) as client:
        hot_h = {"Authorization": f"Bearer {hot}"}
        codes = [client.get("/v1/models", headers=hot_h).status_code for _ in range(7)]
        assert codes == [200] * 5 + [429, 429]
        r = client.get("/v1/models", headers=hot_h)
        assert r.status_code == 429
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert "rate limit" in r.json()["detail"]
        assert (
            client.get("/v1/models", headers={"Authorization": f"Bearer {cold}"}).status_code == 200
        )


def test_rate_limit_can_be_disabled(db: Db) -> None:
    key = _key(db, "read")
    with TestClient(create_app(db.settings_with(rate_limit=""))) as client:
        h = {"Authorization": f"Bearer {key}"}
        assert all(client.get("/v1/models", headers=h).status_code == 200 for _ in range(30))


def test_bad_rate_limit_setting_fails_fast(db: Db) -> None:
    with pytest.raises(ValueError, match="LOSSMON_RATE_LIMIT"):
        db.settings_with(rate_limit="lots")
