"""lossmon client: ``Client`` (sync), ``AsyncClient`` and ``Logger`` (non-blocking, for
serving code). Depends on httpx only."""

from lossmon._errors import (
    ActualsResult,
    AuthError,
    Conflict,
    IngestResult,
    LossmonError,
    NotFound,
    RateLimited,
    Unavailable,
    ValidationFailed,
)
from lossmon.async_client import AsyncClient
from lossmon.client import Client
from lossmon.logger import Logger, LoggerStats, Rejected

__version__ = "0.2.0"

__all__ = [
    "ActualsResult",
    "AsyncClient",
    "AuthError",
    "Client",
    "Conflict",
    "IngestResult",
    "Logger",
    "LoggerStats",
    "LossmonError",
    "NotFound",
    "RateLimited",
    "Rejected",
    "Unavailable",
    "ValidationFailed",
]
