"""Window change log, dirty-window queue and the computed window metrics (whole model and
per slice)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base
from app.windows import record


class WindowChange(Base):
    """An append-only log entry: the inputs of (model, window) changed.

    Ingestion inserts one row per distinct window per batch, in the same transaction as
    the data. Nothing on the write path updates a shared row, so concurrent writers of
    one window never wait on each other (docs/principles.md, principle 11). Compute passes fold
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


# Window sources (which path computed a row): see record.FIELDS "source".
DATABASE = record.DATABASE
SPARK = record.SPARK


if TYPE_CHECKING:

    class MetricColumns:
        """The metric columns (typed loosely here: built from the record's field list)."""

        window_end: Mapped[int]
        computed_at: Mapped[datetime]
        source: Mapped[str]

        def __getattr__(self, name: str) -> Any: ...

else:
    # One column per field of the window record (app/windows/record.py).
    MetricColumns = record.column_mixin()


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
