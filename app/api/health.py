"""Liveness and readiness (no auth)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app import migrate

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "database unreachable or schema behind"}})
def readyz(request: Request) -> Any:
    """The database answers and its schema is at the latest migration."""
    engine = request.app.state.engine
    head = request.app.state.migration_head
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        current = migrate.current_revision(engine)
    except Exception as exc:  # any failure to talk to the database means not ready
        log.warning("readyz: database unreachable: %s", type(exc).__name__)
        return JSONResponse(
            {"status": "unavailable", "detail": "database unreachable"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    if current != head:
        return JSONResponse(
            {
                "status": "unavailable",
                "detail": f"database schema at {current}, code expects {head}; "
                "run `lossmon migrate`",
            },
            status_code=503,
        )
    return {"status": "ready", "schema": current}
