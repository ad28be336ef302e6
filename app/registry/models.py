"""The registry of monitored models."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class MonitoredModel(Base):
    __tablename__ = "models"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    task: Mapped[str] = mapped_column(String(16), default="binary")
    window: Mapped[str] = mapped_column(String(16), default="1h")
    # Derived from `window`; kept so window arithmetic in SQL needs no parsing.
    window_seconds: Mapped[int] = mapped_column(Integer)
    classes: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    reference_base_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    clip_eps: Mapped[float] = mapped_column(Float, default=1e-15)
    # Raw rows of windows that ended longer ago are deleted (app/retention); None: keep.
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
