"""Dirty-window queue and the computed window metrics."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Float, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class DirtyWindow(Base):
    """A (model, window) whose inputs changed since it was last computed.

    Ingestion bumps `generation` in the same transaction as the data it writes. A
    compute pass leases the row (claim_token, leased_until), computes, and deletes the
    row only if `generation` is still what it read: a write that lands mid-compute keeps
    the window dirty, so nothing is ever computed from stale inputs and left that way.
    """

    __tablename__ = "dirty_windows"

    model_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    generation: Mapped[int] = mapped_column(BigInteger, default=1)
    claim_token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    leased_until_us: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class WindowMetric(Base):
    __tablename__ = "window_metrics"

    model_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    window_end: Mapped[int] = mapped_column(BigInteger)
    predictions: Mapped[int] = mapped_column(Integer)
    labeled: Mapped[int] = mapped_column(Integer)
    weight_sum: Mapped[float] = mapped_column(Float)
    label_coverage: Mapped[float | None] = mapped_column(Float, nullable=True)
    positive_rate: Mapped[float | None] = mapped_column(Float, nullable=True)
    log_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    baseline_log_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    skill: Mapped[float | None] = mapped_column(Float, nullable=True)
    log_loss_stderr: Mapped[float | None] = mapped_column(Float, nullable=True)
    log_loss_median: Mapped[float | None] = mapped_column(Float, nullable=True)
    log_loss_p90: Mapped[float | None] = mapped_column(Float, nullable=True)
    expected_log_loss: Mapped[float | None] = mapped_column(Float, nullable=True)
    accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
