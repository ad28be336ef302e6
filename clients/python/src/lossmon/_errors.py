"""Typed errors and results shared by Client, AsyncClient and Logger."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class LossmonError(Exception):
    """Any failed call. ``status_code`` is None when no HTTP answer was received."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: Any = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail
        self.request_id = request_id
        self.retry_after = retry_after


class AuthError(LossmonError):
    """401 (missing, unknown or revoked API key) or 403 (the key lacks the scope)."""


class NotFound(LossmonError):
    """404: unknown model, monitor or alert. The message says how to create it."""


class Conflict(LossmonError):
    """409: a conflicting definition (e.g. changing the window of a model with data)."""


class ValidationFailed(LossmonError):
    """422. ``errors`` is the server's list of ``{"index", "field", "message"}``; for
    batch items ``index`` is the position in the sequence *you* passed (across batches).

    Batches are all-or-nothing: the failing batch stored nothing, but the items before
    ``stored_before`` were stored by earlier batches of the same call (re-sending them
    is harmless)."""

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]],
        stored_before: int = 0,
        status_code: int | None = 422,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, detail=errors, request_id=request_id)
        self.errors = errors
        self.stored_before = stored_before


class RateLimited(LossmonError):
    """429 still answered after all retries (or a Retry-After too long to wait for)."""


class Unavailable(LossmonError):
    """503, connection errors or timeouts still failing after all retries. For a 503 the
    server guarantees nothing was stored."""


@dataclass(frozen=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0


@dataclass(frozen=True)
class ActualsResult:
    accepted: int = 0
    matched: int = 0
    pending: int = 0
    expired: int = 0  # past the model's retention_days with no stored prediction: not kept
