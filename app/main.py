"""create_app(): the FastAPI application. Nothing happens at import time."""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline

from app import migrate
from app.alerting import router as alerting_router
from app.api import health, openapi_examples, rate_limit
from app.api.body_limit import BodyLimitMiddleware
from app.api.errors import install_error_handlers
from app.api.write_gate import RequestDeadlineMiddleware, WriteGate
from app.auth.cache import KeyCache
from app.compare import router as compare_router
from app.config import Settings, load_settings
from app.dashboard import router as dashboard_router
from app.db import create_engine_for, make_sessionmaker
from app.ingestion import fast_route, pg_arrays
from app.ingestion import router as ingestion_router
from app.ingestion import service as ingestion_service
from app.observability import router as observability_router
from app.observability.middleware import PrometheusMiddleware
from app.pg_statement_pool import StatementPool
from app.registry import router as models_router
from app.registry.cache import ModelCache
from app.registry.hooks import RegistryHooks
from app.retention import router as retention_router
from app.spark import router as spark_router
from app.windows import router as windows_router
from app.windows import service as window_service

log = logging.getLogger(__name__)


def _acceptable_request_id(value: str) -> bool:
    # Any client id is fine as long as it cannot forge or flood a log line.
    return 0 < len(value) <= 128 and value.isascii() and value.isprintable()


def create_app(settings: Settings | None = None, *, run_scheduler: bool = False) -> FastAPI:
    settings = settings or load_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Request work is bounded by LOSSMON_DB_LOCK_TIMEOUT_S; the scheduler's jobs get
        # their own engine without that bound (app/db.py).
        engine = create_engine_for(settings, for_requests=True)
        app.state.engine = engine
        app.state.session_factory = make_sessionmaker(engine)
        app.state.read_session_factory = make_sessionmaker(engine, readonly=True)
        # PostgreSQL: prediction batches are awaited on the event loop (no thread hop).
        statement_pool = (
            None
            if settings.is_sqlite
            else StatementPool.from_settings(
                settings, slots=app.state.write_gate.slots, configure=pg_arrays.prepare
            )
        )
        app.state.statement_pool = statement_pool
        app.state.migration_head = migrate.head_revision()
        scheduler = None
        job_engine = None
        if run_scheduler:
            from app import scheduler as scheduler_module

            job_engine = create_engine_for(settings)
            scheduler = scheduler_module.start_background(
                settings=settings,
                factory=make_sessionmaker(job_engine),
                read_factory=make_sessionmaker(job_engine, readonly=True),
            )
        # Everything built so far (app, routes, ORM, schemas) lives as long as the process:
        # out of the collector's sight, a full collection no longer walks it, which cut
        # pauses of the event loop (tail latency of every request, /healthz included).
        gc.collect()
        gc.freeze()
        # A request allocates and frees many containers; at the default threshold (700
        # net allocations) a worker ran ~110 young collections a second under 64
        # single-prediction connections, ~5% of its time (gc.callbacks, 2 workers).
        # At 10,000 it ran 2 in the whole 15 s run: what a request allocates is freed by
        # reference counting long before the count is reached.
        gc.set_threshold(10_000)
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=True)
            if job_engine is not None:
                job_engine.dispose()
            if statement_pool is not None:
                await statement_pool.close()
            engine.dispose()

    # /docs from a packaged copy of Swagger UI (no CDN): the docs work on an air-gapped
    # host and leak no visit to a third party. No /redoc: ReDoc's bundle still fetches
    # its logo from a CDN.
    app = FastAPIOffline(
        redoc_url=None,
        title="lossmon",
        version="0.1.0",
        summary="Windowed log loss against the naive baseline, for classifiers in production.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    # The composition root wires what the registry needs of the domains above it.
    app.state.registry_hooks = RegistryHooks(
        has_data=ingestion_service.has_data, recompute_windows=window_service.recompute_windows
    )
    app.state.rate_limiter = rate_limit.from_settings(settings)
    app.state.key_cache = KeyCache()
    app.state.model_cache = ModelCache()
    app.state.write_gate = WriteGate.from_settings(settings)
    install_error_handlers(app, max_batch_items=settings.max_batch_items)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(PrometheusMiddleware)  # /metrics: counts and times every request
    # Bounded database waits count from a request's arrival (API.md "Time bounds").
    app.add_middleware(RequestDeadlineMiddleware, timeout_s=settings.db_lock_timeout_s)
    # Outermost: every log line of a request (ours, uvicorn's) carries its request id,
    # taken from X-Request-ID when the client sends a valid one, and echoed back.
    app.add_middleware(CorrelationIdMiddleware, validator=_acceptable_request_id)
    app.include_router(health.router)
    app.include_router(observability_router.router)
    app.include_router(models_router.router)
    app.include_router(retention_router.router)
    app.include_router(ingestion_router.router)
    app.include_router(windows_router.router)
    app.include_router(alerting_router.router)
    app.include_router(compare_router.router)
    app.include_router(spark_router.router)
    app.include_router(dashboard_router.router)
    # Matched before the routes above: most prediction batches skip FastAPI's
    # per-request machinery (app/ingestion/fast_route.py).
    fast_route.install(app)
    app.mount(
        dashboard_router.STATIC_URL,
        StaticFiles(directory=dashboard_router.STATIC_DIR),
        name="dashboard-static",
    )
    openapi_examples.install(app)
    return app


SCHEDULER_ENV = "LOSSMON_SERVE_SCHEDULER"


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` (used by `lossmon serve --workers N`): each worker
    process builds its own app from the environment."""
    return create_app(load_settings(), run_scheduler=os.environ.get(SCHEDULER_ENV) == "1")
