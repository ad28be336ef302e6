"""Window change log, dirty-window queue and the computed window metrics (whole model and
per slice)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime


class WindowChange(Base):
    """An append-only log entry: the inputs of (model, window) changed.

    Ingestion inserts one row per distinct window per batch, in the same transaction as
    the data. Nothing on the write path updates a shared row, so concurrent writers of
    one window never wait on each other (ARCHITECTURE principle 11). Compute passes fold
    the log into `dirty_windows` (app.windows.dirty.fold) and delete what they folded.
    """

    __tablename__ = "window_changes"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    model_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("models.id", ondelete="CASCADE"), nullable=False
    )
    window_start: Mapped[int] = mapped_column(BigInteger, nullable=False)


class DirtyWindow(Base):
    """A (model, window) whose inputs changed since it was last computed.

    Only compute passes write it: folding the change log bumps `generation`. A
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


# Window sources.
DATABASE = "database"
SPARK = "spark"


class MetricColumns:
    """The metric fields of one window, shared by the whole-model and the slice rows."""

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
    # multiclass: {class name: rate} and {class name: log loss or null}
    class_rates: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    class_log_loss: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # 10 bins of {lower, upper, count, weight, mean_predicted, observed_rate}
    reliability: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    ece: Mapped[float | None] = mapped_column(Float, nullable=True)
    calibration_gap: Mapped[float | None] = mapped_column(Float, nullable=True)
    computed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Which path computed the row: "database" (the compute pass) or "spark"
    # (`lossmon spark compute`); the compute pass never overwrites a spark row.
    source: Mapped[str] = mapped_column(String(16), server_default=DATABASE)


class WindowMetric(MetricColumns, Base):
    __tablename__ = "window_metrics"

    model_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)


# Slice kinds: one model version, or one value of one segment key.
VERSION = "version"
SEGMENT = "segment"


class SliceMetric(MetricColumns, Base):
    """A window restricted to one model version or one segment key:value.

    Precomputed for the top N values (by predictions in the window) of each dimension;
    the window's remaining values of that dimension share one row with other = true.
    A value with no row of its own in a window that has no `other` row for its key had
    no predictions there; with an `other` row it is computed on demand.
    """

    __tablename__ = "slice_metrics"

    model_id: Mapped[str] = mapped_column(
        String(128), ForeignKey("models.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # "" for versions
    other: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    value: Mapped[str] = mapped_column(String(256), primary_key=True)  # "" for other rows
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)

    __table_args__ = (Index("ix_slice_metrics_model_window", "model_id", "window_start"),)
