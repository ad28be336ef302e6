"""JSON-faithful field types.

FastAPI validates the parsed body in Pydantic's lax Python mode, where "5" passes as an
int and 0 as a bool. These types accept exactly what their JSON Schema says: numbers
for numbers (1.0 is the integer 1, as JSON Schema has it), true/false for booleans.
Constraints go before the validator so the schema shows them as minimum/maximum.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator, Field, StrictInt, StringConstraints


def integral_float(value: Any) -> Any:
    # JSON has one number type: 1.0 is the integer 1 (JSON Schema agrees), 1.5 is not.
    return int(value) if isinstance(value, float) and value.is_integer() else value


AsInt = BeforeValidator(integral_float)

ZeroOrOne = Annotated[StrictInt, Field(ge=0, le=1), AsInt]
# Bounded so it always fits a 32-bit INTEGER column (and means something).
PositiveInt = Annotated[StrictInt, Field(ge=1, le=1_000_000_000), AsInt]
WindowCount = Annotated[StrictInt, Field(ge=1, le=100), AsInt]
TrendWindows = Annotated[StrictInt, Field(ge=3, le=200), AsInt]


_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]")


def _rfc3339_string(value: Any) -> Any:
    # Pydantic would take a number (or "0.5") as unix time; the contract says RFC 3339.
    # datetime objects only come from Python callers (JSON has none): let them through.
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _RFC3339_START.match(value):
        raise ValueError(
            "timestamp must be an RFC 3339 string with an offset, e.g. 2026-11-20T10:00:00Z"
        )
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_rfc3339_string)]


# PostgreSQL text cannot hold NUL; refuse it up front (and say so in the schema) rather
# than fail at insert time. Lone surrogates are already refused by Pydantic.
NO_NUL = r"^[^\x00]*$"


PredictionIdText = Annotated[str, StringConstraints(pattern=NO_NUL, min_length=1, max_length=256)]
VersionText = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=128)]
SegmentValueText = Annotated[str, StringConstraints(pattern=NO_NUL, min_length=1, max_length=256)]
NameText = Annotated[str, StringConstraints(pattern=NO_NUL, min_length=1, max_length=200)]
DescriptionText = Annotated[str, StringConstraints(pattern=NO_NUL, max_length=10_000)]

# Segment keys (also used in filters: `segment=key:value`).
SEGMENT_KEY_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
SEGMENT_KEY_RE = re.compile(SEGMENT_KEY_PATTERN)
