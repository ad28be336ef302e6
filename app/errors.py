"""Domain errors: what a service raises when a request cannot be served.

Services know nothing of HTTP; app/api/errors.py alone maps each class to a status code
(NotFound 404, Conflict 409, Invalid 422). Each carries the `detail` the client sees.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    def __init__(self, detail: Any) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    """The model, monitor or alert asked for does not exist."""


class Conflict(DomainError):
    """The request contradicts what is stored (a duplicate name, a shape change)."""


class Invalid(DomainError):
    """Input that passed the schema but not the domain's rules.

    `detail` is a list of {"index", "field", "message"} (plus "location" for query
    parameters), the shape API.md gives for validation errors.
    """


class Unavailable(DomainError):
    """The request could not be served now and nothing was stored: retry."""


def item_error(index: int | None, field: str, message: str) -> dict[str, Any]:
    """One problem with batch item `index` (None: not about an item)."""
    return {"index": index, "field": field, "message": message}


def invalid_query(field: str, message: str) -> Invalid:
    """A problem with a query parameter, in the same shape as body validation errors."""
    return Invalid([{"index": None, "field": field, "location": "query", "message": message}])
