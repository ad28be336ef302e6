"""What ingestion needs to know about a model, cached per process for a few seconds.

A single-prediction POST would otherwise spend a database round trip (and ORM work) on
reading the model row. A cached shape is never trusted blindly: the insert re-checks
`updated_at` in the same statement (app/ingestion/bulk.py), and a mismatch (the model
changed or was re-created) drops the entry and the request is redone with a fresh read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from app.registry.models import MonitoredModel

DEFAULT_TTL_S = 2.0
MAX_ENTRIES = 10_000


@dataclass(frozen=True, slots=True)
class ModelShape:
    id: str
    task: str
    classes: tuple[str, ...] | None
    window_seconds: int
    retention_days: int | None
    updated_at: datetime  # the row version this shape was read from

    @classmethod
    def of(cls, model: MonitoredModel) -> ModelShape:
        return cls(
            id=model.id,
            task=model.task,
            classes=tuple(model.classes) if model.classes is not None else None,
            window_seconds=model.window_seconds,
            retention_days=model.retention_days,
            updated_at=model.updated_at,
        )


class ModelCache:
    def __init__(self, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic):
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._shapes: dict[str, tuple[float, ModelShape]] = {}

    def cached(self, model_id: str) -> ModelShape | None:
        """The cached shape while it is fresh (None: call get with a loader)."""
        return self._fresh(model_id, self._clock())

    def _fresh(self, model_id: str, now: float) -> ModelShape | None:
        with self._lock:
            hit = self._shapes.get(model_id)
        return hit[1] if hit is not None and now < hit[0] else None

    def get(self, model_id: str, load: Callable[[], ModelShape]) -> ModelShape:
        """The cached shape, or load() (which raises for an unknown model)."""
        now = self._clock()
        shape = self._fresh(model_id, now)
        if shape is not None:
            return shape
        shape = load()
        with self._lock:
            if len(self._shapes) >= MAX_ENTRIES:
                self._shapes.clear()
            self._shapes[model_id] = (now + self._ttl_s, shape)
        return shape

    def forget(self, model_id: str) -> None:
        with self._lock:
            self._shapes.pop(model_id, None)
