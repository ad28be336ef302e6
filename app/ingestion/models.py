"""Predictions and actuals: the two event streams lossmon joins.

Event time is stored as integer epoch microseconds (`ts_us`) and each prediction's
window as integer epoch seconds (`window_start`): exact, cheap to compare, and the same
on SQLite and PostgreSQL (SQLite has no native timestamp type). A model's window size
cannot change once it has data, so `window_start` stays valid.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, true
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class Prediction(Base):
    __tablename__ = "predictions"

    model_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    prediction_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    ts_us: Mapped[int] = mapped_column(BigInteger)
    window_start: Mapped[int] = mapped_column(BigInteger)
    # binary: probability of the positive class; multiclass: NULL (see probabilities)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    probabilities: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)
    model_version: Mapped[str] = mapped_column(String(128), default="")
    segments: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    received_us: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index("ix_predictions_model_window", "model_id", "window_start"),)


class Actual(Base):
    """Ground truth, keyed by prediction id; may arrive before its prediction."""

    __tablename__ = "actuals"

    model_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    prediction_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    # binary: 0/1; multiclass: index into the model's classes
    label: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    ts_us: Mapped[int] = mapped_column(BigInteger)
    received_us: Mapped[int] = mapped_column(BigInteger)
    # True when no committed prediction was visible at write time. A concurrent
    # prediction insert may commit just after us; the compute pass sweeps pending
    # actuals, so the join is never missed (see windows.service.sweep_pending_actuals).
    pending: Mapped[bool] = mapped_column(Boolean)
    # The matched prediction's window (NULL while pending). Recomputing a window then
    # reads its actuals by this index, never the whole table (bench/scale.py), and
    # retention deletes them by window like the predictions.
    window_start: Mapped[int | None] = mapped_column(BigInteger, nullable=True)

    __table_args__ = (
        Index("ix_actuals_model_window", "model_id", "window_start"),
        Index(
            "ix_actuals_pending",
            "model_id",
            postgresql_where=pending == true(),
            sqlite_where=pending == true(),
        ),
    )
