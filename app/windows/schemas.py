"""Metric history shapes (API.md "Metric history")."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from app.windows import record
from app.windows.record import ReliabilityBin

if TYPE_CHECKING:

    class WindowOut(BaseModel):
        start: datetime
        end: datetime
        computed_at: datetime

        def __getattr__(self, name: str) -> Any: ...

else:
    # Built from the window record's field list (app/windows/record.py).
    WindowOut = record.window_out_model()

__all__ = ["HistoryOut", "ReliabilityBin", "WindowOut", "window_out"]


class HistoryOut(BaseModel):
    model_id: str
    window: str
    model_version: str | None = None
    segments: list[str] = Field(default_factory=list)
    windows: list[WindowOut]
    next_cursor: str | None = Field(
        default=None, description="pass as ?cursor= for the next page; null on the last page"
    )


def _ts(epoch_s: int) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def window_out(values: dict[str, Any]) -> WindowOut:
    data = dict(values)
    data["start"] = _ts(int(data.pop("window_start")))
    data["end"] = _ts(int(data.pop("window_end")))
    data.pop("model_id", None)
    return WindowOut(**data)
