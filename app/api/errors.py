"""Every error is JSON {"detail": ...} with the status API.md names.

Validation errors become a list of {"index", "field", "message"} so a client can find
the bad record in a batch: FastAPI's loc ("body", "predictions", 3, "score") turns into
index 3, field "score".
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.api.write_gate import DatabaseBusy
from app.errors import (
    Conflict,
    DomainError,
    Invalid,
    NotFound,
    Unavailable,
    invalid_query,
    item_error,
)

log = logging.getLogger(__name__)

BATCH_KEYS = ("predictions", "actuals")
RETRY_AFTER_S = "2"
NAIVE_TIMESTAMP = "timestamp must carry a UTC offset (RFC 3339), e.g. 2026-11-20T10:00:00Z"

_FRIENDLY = {
    "timezone_aware": NAIVE_TIMESTAMP,
    "finite_number": "must be a finite number (NaN and Infinity are not allowed)",
}


class ApiError(Exception):
    """An error a service raises for the edge to turn into a response."""

    def __init__(self, status_code: int, detail: Any, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.headers = headers


# The one place domain errors become HTTP statuses (docs/principles.md, principle 12).
DOMAIN_STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Unavailable: 503,
}

# Routers raise the domain form too; kept under the old names for them.
query_error = invalid_query
__all__ = ["ApiError", "item_error", "query_error"]


def _domain_status(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 500


def _convert(err: dict[str, Any]) -> dict[str, Any]:
    loc: Sequence[Any] = err.get("loc", ())
    message = _FRIENDLY.get(err.get("type", ""), err.get("msg", "invalid"))
    if len(loc) >= 3 and loc[0] == "body" and loc[1] in BATCH_KEYS and isinstance(loc[2], int):
        field = ".".join(str(p) for p in loc[3:]) or "item"
        return item_error(loc[2], field, message)
    where = loc[0] if loc else "body"
    if where in ("query", "path", "header") and len(loc) >= 2:
        # Repeated query parameters: name the parameter, point at the bad occurrence.
        index = loc[2] if len(loc) >= 3 and isinstance(loc[2], int) else None
        return {"index": index, "field": str(loc[1]), "location": where, "message": message}
    rest = [str(p) for p in loc[1:]]
    field = ".".join(rest) if rest else str(where)
    return {"index": None, "field": field, "location": where, "message": message}


def validation_detail(errors: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_convert(dict(e)) for e in errors]


_LOGGED_REASONS = 5


def log_rejection(request: Request, status: int, detail: Any) -> None:
    """One log line per refused request with why, so an operator sees what clients get
    wrong without the client's help (the first few reasons; never the submitted values,
    which validation messages do not echo)."""
    if isinstance(detail, list):
        reasons = [
            ("" if d.get("index") is None else f"[{d['index']}] ")
            + f"{d.get('field')}: {d.get('message')}"
            for d in detail[:_LOGGED_REASONS]
            if isinstance(d, dict)
        ]
        more = len(detail) - _LOGGED_REASONS
        text = "; ".join(reasons) + (f"; and {more} more" if more > 0 else "")
    else:
        text = str(detail)
    log.info("%s %s -> %d: %s", request.method, request.url.path, status, text)


def install_error_handlers(app: FastAPI, *, max_batch_items: int) -> None:
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"detail": "malformed JSON body"}, status_code=400)
        body = exc.body
        if isinstance(body, dict):
            for key in BATCH_KEYS:
                items = body.get(key)
                if isinstance(items, list) and len(items) > max_batch_items:
                    return batch_too_large(len(items), max_batch_items)
        detail = validation_detail(errors)
        log_rejection(request, 422, detail)
        return JSONResponse({"detail": detail}, status_code=422)

    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        if exc.status_code in (409, 422):
            log_rejection(request, exc.status_code, exc.detail)
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    async def on_domain_error(request: Request, exc: DomainError) -> JSONResponse:
        status = _domain_status(exc)
        # Nothing was stored: say when to retry.
        headers = {"Retry-After": "1"} if status == 503 else None
        return JSONResponse({"detail": exc.detail}, status_code=status, headers=headers)

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            # Starlette lists only the first matching route's methods; a path served by
            # several routes (GET and PUT) must list them all.
            headers["Allow"] = ", ".join(_allowed_methods(app, request.url.path))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    async def on_db_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The transaction was rolled back by the session dependency: nothing was stored.
        log.warning("database unavailable: %s", type(exc).__name__)
        return JSONResponse(
            {"detail": "database unavailable; the request was not stored, retry later"},
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_S},
        )

    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    app.add_exception_handler(ApiError, on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(DomainError, on_domain_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, on_db_unavailable)
    app.add_exception_handler(PoolTimeout, on_db_unavailable)
    app.add_exception_handler(DatabaseBusy, on_db_unavailable)
    app.add_exception_handler(DBAPIError, _db_error_handler(on_db_unavailable))
    # The bulk paths use the DBAPI cursor directly (app/ingestion/bulk.py,
    # app/windows/reader.py), so driver errors can arrive unwrapped by SQLAlchemy.
    app.add_exception_handler(psycopg.OperationalError, on_db_unavailable)
    app.add_exception_handler(psycopg.InterfaceError, on_db_unavailable)
    app.add_exception_handler(sqlite3.OperationalError, on_db_unavailable)


def _db_error_handler(on_unavailable: Any) -> Any:
    async def handler(request: Request, exc: DBAPIError) -> JSONResponse:
        if exc.connection_invalidated:
            return await on_unavailable(request, exc)
        log.exception("database error")
        return JSONResponse({"detail": "internal database error"}, status_code=500)

    return handler


def _allowed_methods(app: FastAPI, path: str) -> list[str]:
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        app.state, "allowed_methods", None
    )
    if table is None:
        table = []
        for template, ops in app.openapi()["paths"].items():
            regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
            table.append((re.compile(f"^{regex}$"), sorted(m.upper() for m in ops)))
        app.state.allowed_methods = table
    return sorted({m for pattern, methods in table if pattern.match(path) for m in methods})


def batch_too_large(count: int, cap: int) -> JSONResponse:
    return JSONResponse(
        {"detail": batch_too_large_message(count, cap)},
        status_code=413,
    )


def batch_too_large_message(count: int, cap: int) -> str:
    return f"batch holds {count} items; the limit is {cap}. Split it into smaller batches."
