"""Fixtures for webhook tests: a loopback receiver, a fake clock, seeded rows."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.fernet import Fernet

from app.alerting.models import Alert, Monitor
from app.alerting.watched import MONITOR_WEBHOOKS
from app.config import Settings
from app.db import session_scope
from app.notify import outbox
from app.notify.delivery import DeliveryReport, deliver_due
from app.notify.models import WebhookDelivery
from app.notify.secrets import encrypt, load_cipher
from app.notify.signing import generate_secret
from app.registry.models import MonitoredModel
from tests.conftest import Db
from tests.notify.receiver import Receiver

# Explicit, so no test ever creates ./lossmon.secret in the working directory.
TEST_KEY = Fernet.generate_key().decode()


class FakeClock:
    """Starts at the real time: standardwebhooks rejects timestamps > 5 min off."""

    def __init__(self, t: float | None = None) -> None:
        self.t = time.time() if t is None else t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


def webhook_settings(db: Db, **overrides: Any) -> Settings:
    defaults: dict[str, Any] = {
        "webhook_allow_private": True,  # the receiver is on loopback
        "webhook_timeout_s": 2.0,
        "webhook_backoff_base_s": 0.5,
        "webhook_backoff_max_s": 4.0,
        "secret_key": TEST_KEY,
    }
    return db.settings_with(**{**defaults, **overrides})


@dataclass
class Hooks:
    """One monitor whose webhook points at the receiver, and helpers around it."""

    db: Db
    receiver: Receiver
    clock: FakeClock
    settings: Settings
    secret: str = field(default_factory=generate_secret)
    rng: random.Random = field(default_factory=lambda: random.Random(42))
    monitor_id: str = "mon_1"
    model_id: str = "model_1"

    def configure(self, **overrides: Any) -> None:
        self.settings = webhook_settings(self.db, **overrides)

    def secret_enc(self) -> str:
        return encrypt(load_cipher(self.settings), self.secret)

    def add_monitor(self, monitor_id: str, url: str) -> None:
        now = self.clock.now
        with session_scope(self.db.factory) as s:
            if s.get(MonitoredModel, self.model_id) is None:
                s.add(
                    MonitoredModel(
                        id=self.model_id,
                        task="binary",
                        window="1h",
                        window_seconds=3600,
                        description="",
                        clip_eps=1e-15,
                        created_at=now,
                        updated_at=now,
                    )
                )
                s.flush()
            s.add(
                Monitor(
                    id=monitor_id,
                    model_id=self.model_id,
                    name=f"{monitor_id}-degrading",
                    rule={"kind": "test"},
                    min_labeled=0,
                    for_windows=1,
                    webhook_url=url,
                    webhook_secret_enc=self.secret_enc(),
                    enabled=True,
                    state="firing",
                    needs_eval=False,
                    created_at=now,
                    updated_at=now,
                )
            )

    def add(
        self,
        payload: dict[str, Any] | None = None,
        *,
        monitor_id: str | None = None,
        url: str | None = None,
        secret_enc: str | None = "default",
        at: datetime | None = None,
    ) -> str:
        """Enqueue one delivery (with its alert row); returns the delivery id."""
        monitor_id = monitor_id or self.monitor_id
        now = at or self.clock.now
        alert_id = "alt_" + uuid.uuid4().hex[:16]
        body = payload or {"type": "alert.firing", "alert_id": alert_id, "model_id": "model_1"}
        with session_scope(self.db.factory) as s:
            s.add(
                Alert(
                    id=alert_id,
                    monitor_id=monitor_id,
                    model_id=self.model_id,
                    state="firing",
                    started_at=now,
                    window_start=0,
                    window={"logloss": 0.7},
                    monitor_snapshot={"id": monitor_id},
                )
            )
            s.flush()
            delivery = outbox.enqueue(
                session=s,
                alert_id=alert_id,
                monitor_id=monitor_id,
                event_type="alert.firing",
                payload=body,
                url=url or self.receiver.url,
                secret_enc=self.secret_enc() if secret_enc == "default" else secret_enc,
                now=now,
            )
            return delivery.id

    def run(self, **kw: Any) -> DeliveryReport:
        return deliver_due(
            factory=self.db.factory,
            settings=self.settings,
            clock=self.clock,
            rng=self.rng,
            owner=MONITOR_WEBHOOKS,
            **kw,
        )

    def row(self, delivery_id: str) -> WebhookDelivery:
        with session_scope(self.db.factory) as s:
            row = s.get(WebhookDelivery, delivery_id)
            assert row is not None
            return row

    def monitor(self, monitor_id: str | None = None) -> Monitor:
        with session_scope(self.db.factory) as s:
            monitor = s.get(Monitor, monitor_id or self.monitor_id)
            assert monitor is not None
            return monitor

    def advance_past_next_attempt(self, delivery_id: str) -> None:
        due = self.row(delivery_id).next_attempt_us / 1_000_000
        self.clock.t = max(self.clock.t, due + 0.001)


def make_hooks(db: Db, receiver: Receiver, clock: FakeClock | None = None) -> Hooks:
    hooks = Hooks(db, receiver, clock or FakeClock(), webhook_settings(db))
    hooks.add_monitor(hooks.monitor_id, receiver.url)
    return hooks


@pytest.fixture
def hooks(db: Db, receiver: Receiver) -> Hooks:
    return make_hooks(db, receiver)
