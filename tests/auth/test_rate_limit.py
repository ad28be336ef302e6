"""Per-key rate limit: 429 with Retry-After for the key over its budget; other keys
unaffected."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from limits import parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.api.rate_limit import KeyRateLimiter
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


def test_a_shared_storage_is_asked_off_the_event_loop(db: Db) -> None:
    # limits' own storage stands in for Redis (the same KeyRateLimiter code path): each
    # hit is a network round trip there, which on the event loop would stall every
    # request, /healthz included, for as long as Redis takes to answer.
    on_loop: list[bool] = []

    class Recording(KeyRateLimiter):
        def retry_after(self, key_id: str) -> int | None:
            on_loop.append(_loop_running())
            return super().retry_after(key_id)

    key = _key(db, "read")
    app = create_app(db.settings)
    app.state.rate_limiter = Recording(
        MovingWindowRateLimiter(storage_from_string("memory://")), parse_many("2/minute")
    )
    with TestClient(app) as client:
        h = {"Authorization": f"Bearer {key}"}
        codes = [client.get("/v1/models", headers=h).status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert on_loop == [False, False, False]


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
