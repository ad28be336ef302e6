"""Imports every table module so Base.metadata is complete (Alembic, tests)."""

from app.db import Base
from app.ingestion import models as ingestion_models
from app.models import models as registry_models
from app.windows import models as window_models

__all__ = ["Base", "ingestion_models", "registry_models", "window_models"]
