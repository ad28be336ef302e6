"""Deprecated: the Python client is now its own distribution, `lossmon-client`
(`pip install ./clients/python`, then `from lossmon import Client, AsyncClient, Logger`).

This module re-exports it for a deprecation period so existing `from app.client import
Client` code keeps working (with a DeprecationWarning); it will be removed."""

from __future__ import annotations

import warnings

try:
    from lossmon import (
        ActualsResult,
        AuthError,
        Client,
        Conflict,
        IngestResult,
        LossmonError,
        NotFound,
        RateLimited,
        Unavailable,
        ValidationFailed,
    )
except ModuleNotFoundError as exc:  # pragma: no cover - depends on the environment
    raise ModuleNotFoundError(
        "app.client moved to the lossmon-client distribution: "
        "pip install ./clients/python, then `from lossmon import Client`"
    ) from exc

warnings.warn(
    "app.client is deprecated: use `from lossmon import Client` (pip install ./clients/python)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "ActualsResult",
    "AuthError",
    "Client",
    "Conflict",
    "IngestResult",
    "LossmonError",
    "NotFound",
    "RateLimited",
    "Unavailable",
    "ValidationFailed",
]
