"""Event timestamps as exact epoch microseconds (UTC), the form every column stores.

`as_utc_micros` / `utc_micros_each` convert datetimes. `parse_utc_micros` parses a whole
column of RFC 3339 texts at once with numpy, for the layouts serving systems send:

    YYYY-MM-DDTHH:MM:SS[.f, 1 to 6 digits](Z | +HH:MM | -HH:MM)

Converting one datetime per record (msgspec parsing each text, then the aware
subtraction) was ~12% of the server's CPU on 1,000-row prediction batches (py-spy);
this is ~40 µs for 1,000 texts. Anything else (lowercase t/z, a space, an offset without
its colon, a leap second, year 0, more than 6 fraction digits, non-ASCII, more than a few
distinct lengths) returns None: the caller parses that column the general way. So what
this accepts is a strict subset of what Pydantic's datetime accepts, with the same value
(tests/ingestion/test_timestamps.py compares them).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from app.ingestion.ascii_columns import one_width_ascii

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def as_utc_micros(ts: datetime) -> int:
    """Exact epoch microseconds (float timestamp() would round)."""
    return (ts - _EPOCH) // _MICROSECOND


def utc_micros_each(timestamps: Iterable[datetime | None]) -> list[int | None]:
    """as_utc_micros of each (None stays None), without a function call per row: a
    1,000-row batch spent ~3% of the server's CPU in those calls (py-spy)."""
    return [None if t is None else (t - _EPOCH) // _MICROSECOND for t in timestamps]


Int64s = npt.NDArray[np.int64]

# A batch usually has one layout, so one text length; a producer whose formatter drops a
# zero fraction (Python's isoformat) gives two. More than this: the general way.
_MAX_LENGTHS = 4
_DIGIT, _DASH, _COLON, _DOT, _T, _Z, _PLUS, _MINUS = (ord(c) for c in "0-:.TZ+-")
# Calendar tables, indexed by year (0 to 9999) or month (1 to 12): gathers instead of
# the modulo and floor-division arithmetic, the slowest numpy integer operations.
_YEARS = np.arange(10_000, dtype=np.int64)
_LEAP = ((_YEARS % 4 == 0) & ((_YEARS % 100 != 0) | (_YEARS % 400 == 0))).astype(np.int64)
# Days from 1970-01-01 to January 1st of each year (year 0 unused: refused above).
_DAYS_BEFORE_YEAR = np.concatenate(([0], np.cumsum(365 + _LEAP[:-1])))
_DAYS_BEFORE_YEAR -= _DAYS_BEFORE_YEAR[1970]
_MONTH_LENGTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_DAYS_BEFORE_MONTH = np.concatenate(([0, 0], np.cumsum(_MONTH_LENGTH[1:-1])))


def parse_utc_micros(texts: Sequence[str]) -> Int64s | None:
    """Epoch microseconds of each text, or None when any text is outside the layouts
    above (or names no real instant of them: 2026-02-30, 25:00, ...)."""
    if not texts:
        return np.empty(0, dtype=np.int64)
    parsed = _parse_same_length(texts)
    if parsed is not None or len(set(map(len, texts))) == 1:
        return parsed
    by_length: dict[int, list[int]] = {}
    for i, text in enumerate(texts):
        by_length.setdefault(len(text), []).append(i)
    if len(by_length) > _MAX_LENGTHS:
        return None
    out = np.empty(len(texts), dtype=np.int64)
    for indexes in by_length.values():
        group = _parse_same_length([texts[i] for i in indexes])
        if group is None:
            return None
        out[indexes] = group
    return out


def _parse_same_length(texts: Sequence[str]) -> Int64s | None:
    """parse_utc_micros of texts that must all be as long as the first (else None)."""
    first = texts[0]
    length = len(first)
    if length >= 20 and first[-1] == "Z":
        offset = False
    elif length >= 25 and first[-6] in "+-" and first[-3] == ":":
        offset = True
    else:
        return None
    layout = _layout(length, offset)
    if layout is None:
        return None
    data = one_width_ascii(texts)
    if data is None:
        return None
    return layout.parse(np.frombuffer(data, dtype=np.uint8).reshape(len(texts), length))


@functools.lru_cache(maxsize=64)
def _layout(length: int, offset: bool) -> _Layout | None:
    """The layout of texts this long, ending in ±HH:MM (`offset`) or Z."""
    before_zone = length - (6 if offset else 1)
    if before_zone == 19:
        return _Layout(length, 0, offset)
    if 21 <= before_zone <= 26:  # the '.' is checked with the rest
        return _Layout(length, before_zone - 20, offset)
    return None


# Fields of a text, the rows of _Layout.weights' product, and their bounds (the day is
# checked against its month's length below).
_YEAR, _MONTH, _DAY, _HOUR, _MINUTE, _SECOND, _MICRO, _ZONE_HOUR, _ZONE_MINUTE = range(9)
_LOW = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=np.float32)[:, None]
_HIGH = np.array([9999, 12, 31, 23, 59, 59, 999_999, 23, 59], dtype=np.float32)[:, None]


class _Layout:
    """Where each part sits in texts of one length, taken from the first text; parse()
    then checks every text against it."""

    __slots__ = ("length", "limit", "offset", "template", "weights")

    def __init__(self, length: int, fraction: int, offset: bool) -> None:
        self.length = length
        self.offset = offset  # ±HH:MM (else Z)
        # text - template (bytes, wrapping) is each digit's value at a digit, 0 at a fixed
        # character; `limit` is the most each may be: one pass checks the whole layout.
        self.template = np.zeros(length, dtype=np.uint8)
        self.limit = np.zeros(length, dtype=np.uint8)
        fixed = {4: _DASH, 7: _DASH, 10: _T, 13: _COLON, 16: _COLON}
        if fraction:
            fixed[19] = _DOT
        if offset:
            fixed[length - 3] = _COLON
            self.limit[length - 6] = 255  # the sign: checked on its own
        else:
            fixed[length - 1] = _Z
        for position, char in fixed.items():
            self.template[position] = char
        # (text position, field, weight) of every digit.
        places = [(0, _YEAR, 1000), (1, _YEAR, 100), (2, _YEAR, 10), (3, _YEAR, 1)]
        for start, field in ((5, _MONTH), (8, _DAY), (11, _HOUR), (14, _MINUTE), (17, _SECOND)):
            places += [(start, field, 10), (start + 1, field, 1)]
        places += [(20 + k, _MICRO, 10 ** (5 - k)) for k in range(fraction)]
        if offset:
            for start, field in ((length - 5, _ZONE_HOUR), (length - 2, _ZONE_MINUTE)):
                places += [(start, field, 10), (start + 1, field, 1)]
        # fields = weights @ digits: one small matrix product instead of a dozen column
        # operations; float32 is exact here (every partial sum is below 2**24).
        self.weights = np.zeros((length, len(_LOW)), dtype=np.float32)
        for position, field, weight in places:
            self.template[position] = _DIGIT
            self.limit[position] = 9
            self.weights[position, field] = weight

    def parse(self, chars: npt.NDArray[np.uint8]) -> Int64s | None:
        delta = chars - self.template
        if not (delta <= self.limit).all():
            return None
        exact = (delta.astype(np.float32) @ self.weights).T
        if not ((exact >= _LOW) & (exact <= _HIGH)).all():
            return None
        fields = exact.astype(np.int64)
        year, month, day = fields[_YEAR], fields[_MONTH], fields[_DAY]
        leap = _LEAP[year]
        if (day > _MONTH_LENGTH[month] + ((month == 2) & leap)).any():
            return None
        days = _DAYS_BEFORE_YEAR[year] + _DAYS_BEFORE_MONTH[month] + ((month > 2) & leap) + day - 1
        seconds = days * 86_400 + fields[_HOUR] * 3_600 + fields[_MINUTE] * 60 + fields[_SECOND]
        if self.offset:
            sign = chars[:, self.length - 6]
            if not ((sign == _PLUS) | (sign == _MINUS)).all():
                return None
            zone = fields[_ZONE_HOUR] * 3_600 + fields[_ZONE_MINUTE] * 60
            seconds = seconds - np.where(sign == _MINUS, -zone, zone)
        micros: Int64s = seconds * 1_000_000 + fields[_MICRO]
        return micros
