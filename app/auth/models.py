"""API keys, stored as SHA-256 hashes; only a short prefix is kept in clear."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class ApiKey(Base):
    __tablename__ = "api_keys"

    # The visible prefix doubles as the key id (shown in `lossmon keys list`, logs).
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(16))  # ingest | read | admin
    key_hash: Mapped[str] = mapped_column(String(64))  # sha256 hex of the whole key
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
