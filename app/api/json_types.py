"""Moved to app.json_types (pure Pydantic types, used below the HTTP edge too); this
name stays so code written against it keeps working."""

from app.json_types import *  # noqa: F403
from app.json_types import (  # noqa: F401
    NO_NUL,
    AsInt,
    DescriptionText,
    NameText,
    PositiveInt,
    PredictionIdText,
    SegmentValueText,
    Timestamp,
    TrendWindows,
    VersionText,
    WindowCount,
    ZeroOrOne,
    integral_float,
)
