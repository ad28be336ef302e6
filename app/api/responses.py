"""Documented error responses, so /openapi.json says what the API really answers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ValidationItem(BaseModel):
    index: int | None = Field(description="position of the bad record in the batch, if any")
    field: str
    message: str
    location: str | None = Field(default=None, description="query, path or body")


class ErrorOut(BaseModel):
    detail: str


class ValidationErrorOut(BaseModel):
    detail: list[ValidationItem]


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorOut, "description": description}


# Every /v1 route: auth, rate limit, database outage, validation.
COMMON: dict[int | str, dict[str, Any]] = {
    401: _error("no API key, or an unknown or revoked one"),
    403: _error("the API key lacks the scope this call needs"),
    422: {"model": ValidationErrorOut, "description": "validation failed; nothing stored"},
    429: _error("rate limited; see Retry-After"),
    503: _error("database unavailable; nothing stored, safe to retry (see Retry-After)"),
}

# Routes with a JSON body.
BODY: dict[int | str, dict[str, Any]] = {
    400: _error("malformed JSON"),
    413: _error("body or batch too large"),
}

NOT_FOUND: dict[int | str, dict[str, Any]] = {404: _error("unknown model, monitor or alert")}
CONFLICT: dict[int | str, dict[str, Any]] = {409: _error("conflicting definition")}
