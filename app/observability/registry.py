"""The per-app metrics registry, created on first use and kept in app.state.

Both the middleware (through scope["app"]) and GET /metrics (through request.app) reach
it with for_app(app), so app/main.py only adds the middleware and the router."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from types import SimpleNamespace

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)
from sqlalchemy.orm import Session, sessionmaker
from starlette.applications import Starlette

from app.counters import INGEST_COLLECTOR
from app.observability.collector import DatabaseCollector

# Seconds; ingest of a large batch or a cold scrape can take a few seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class Observability:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram


_lock = threading.Lock()


def _build(app: Starlette) -> Observability:
    # No *_created series next to every counter/histogram child (they double the series
    # count and Prometheus' text format has no use for them). Process-wide, idempotent.
    disable_created_metrics()
    registry = CollectorRegistry()
    requests = Counter(
        "lossmon_http_requests",
        "HTTP requests served, by method, route template and status code.",
        ["method", "route", "status"],
        registry=registry,
    )
    latency = Histogram(
        "lossmon_http_request_duration_seconds",
        "Time from receiving a request to finishing its response, by method, route "
        "template and status code.",
        ["method", "route", "status"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(INGEST_COLLECTOR)
    registry.register(DatabaseCollector(app.state))
    return Observability(registry=registry, requests=requests, latency=latency)


def worker_registry(read_factory: sessionmaker[Session]) -> CollectorRegistry:
    """What `lossmon worker --metrics-port` exposes: the process, the scheduler's
    liveness and the database gauges (backlog, outbox depth and age, model windows)."""
    disable_created_metrics()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(DatabaseCollector(SimpleNamespace(read_session_factory=read_factory)))
    return registry


def for_app(app: Starlette) -> Observability:
    obs: Observability | None = getattr(app.state, "observability", None)
    if obs is None:
        with _lock:
            obs = getattr(app.state, "observability", None)
            if obs is None:
                obs = _build(app)
                app.state.observability = obs
    return obs
