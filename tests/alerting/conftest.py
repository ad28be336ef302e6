"""Fixtures of the end-to-end alerting tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import Db
from tests.notify.conftest import webhook_settings
from tests.notify.receiver import Receiver


@pytest.fixture
def ctr_env(db: Db, receiver: Receiver) -> Iterator[tuple[TestClient, Db, Any]]:
    """Model "ctr" (1h windows) over HTTP; webhooks may go to the loopback receiver."""
    settings = webhook_settings(db)
    with TestClient(create_app(settings)) as client:
        assert client.put("/v1/models/ctr", json={"window": "1h"}).status_code == 200
        yield client, db, settings
