"""Imports every table module so Base.metadata is complete (Alembic, tests)."""

from app.alerting import models as alerting_models
from app.auth import models as auth_models
from app.db import Base
from app.ingestion import models as ingestion_models
from app.notify import models as notify_models
from app.registry import models as registry_models
from app.windows import models as window_models

__all__ = [
    "Base",
    "alerting_models",
    "auth_models",
    "ingestion_models",
    "notify_models",
    "registry_models",
    "window_models",
]
