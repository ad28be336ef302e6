"""One-dimensional PostgreSQL arrays packed in the binary wire format, for the bulk
ingest statements (bulk.py).

psycopg dumps a Python list element by element in Python (a dumper call, a length
header and a join per element): for a 1,000-row prediction batch its 7 column arrays
were ~26% of the server's CPU (py-spy --gil, bench/ingest.py). Here the fixed-width
columns are packed by numpy in one C call each and text by a few C-level joins, ~4x
less per array. Pass the result as a `%b` parameter: the dumpers registered below hand
the bytes over with the array's type oid, so the SQL needs no other change (call
`prepare(conn)` first).

The format (PostgreSQL's array_send): int32 ndim, int32 has-null flag, int32 element
oid, then per dimension int32 size and int32 lower bound (1), then per element int32
byte length (-1 for NULL) followed by the element's own binary form.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format

from app.ingestion.ascii_columns import one_width_ascii

_INT8_OID, _FLOAT8_OID, _TEXT_OID = 20, 701, 25
_HEAD_1D = struct.Struct(">iiiii")
_HEAD_EMPTY = struct.Struct(">iii")
_LEN = struct.Struct(">i")
_NULL = _LEN.pack(-1)
_INT8_ELEMS = np.dtype([("len", ">i4"), ("value", ">i8")])
_FLOAT8_ELEMS = np.dtype([("len", ">i4"), ("value", ">f8")])


class PackedArray(bytes):
    """An array already in PostgreSQL's binary format (one subclass per element type)."""

    __slots__ = ()


class Int8Array(PackedArray):
    __slots__ = ()


class Float8Array(PackedArray):
    __slots__ = ()


class TextArray(PackedArray):
    __slots__ = ()


def _head(count: int, has_null: bool, element_oid: int) -> bytes:
    if count == 0:
        return _HEAD_EMPTY.pack(0, 0, element_oid)
    return _HEAD_1D.pack(1, int(has_null), element_oid, count, 1)


def int8_array(values: Sequence[int] | npt.NDArray[np.int64]) -> Int8Array:
    """bigint[] without NULLs (OverflowError past 64 bits, as PostgreSQL would refuse)."""
    elems = np.empty(len(values), dtype=_INT8_ELEMS)
    elems["len"] = 8
    elems["value"] = values
    return Int8Array(_head(len(values), False, _INT8_OID) + elems.tobytes())


def float8_array(values: Sequence[float | None]) -> Float8Array:
    """float8[]; None is NULL."""
    if None in values:
        parts = [_NULL if v is None else b"\x00\x00\x00\x08" + struct.pack(">d", v) for v in values]
        return Float8Array(_head(len(values), True, _FLOAT8_OID) + b"".join(parts))
    elems = np.empty(len(values), dtype=_FLOAT8_ELEMS)
    elems["len"] = 8
    elems["value"] = values
    return Float8Array(_head(len(values), False, _FLOAT8_OID) + elems.tobytes())


def text_array(values: Sequence[str | None]) -> TextArray:
    """text[] (UTF-8, as psycopg sends text); None is NULL. Text cannot hold NUL in
    PostgreSQL: the API refuses it before it gets here (schemas.py)."""
    if None in values:
        parts = [_NULL if v is None else _LEN.pack(len(b := v.encode())) + b for v in values]
        return TextArray(_head(len(values), True, _TEXT_OID) + b"".join(parts))
    fixed = _fixed_width_ascii(values)  # type: ignore[arg-type]
    if fixed is not None:
        return TextArray(_head(len(values), False, _TEXT_OID) + fixed)
    encoded = [v.encode() for v in values]  # type: ignore[union-attr]
    lengths = map(_LEN.pack, map(len, encoded))
    body = b"".join(chain.from_iterable(zip(lengths, encoded, strict=True)))
    return TextArray(_head(len(values), False, _TEXT_OID) + body)


def _fixed_width_ascii(values: Sequence[str]) -> bytes | None:
    """The elements of text[] packed by numpy in one pass, when every value is ASCII of
    one length (ids are often fixed-width: UUIDs, zero-padded counters); None otherwise.
    For 1,000 ten-character ids 9 us instead of 127 us."""
    data = one_width_ascii(values)
    if data is None:
        return None
    width = len(values[0])
    elems = np.empty(len(values), dtype=[("len", ">i4"), ("value", f"S{width}")])
    elems["len"] = width
    elems["value"] = np.frombuffer(data, dtype=f"S{width}")
    return elems.tobytes()


class _PackedDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: PackedArray) -> Buffer:
        return obj


class _Int8ArrayDumper(_PackedDumper):
    oid = 1016  # int8[]


class _Float8ArrayDumper(_PackedDumper):
    oid = 1022  # float8[]


class _TextArrayDumper(_PackedDumper):
    oid = 1009  # text[]


# Connections that dump the packed types (weak: a closed connection drops out).
_ready: weakref.WeakSet[psycopg.BaseConnection[Any]] = weakref.WeakSet()


def prepare(conn: psycopg.BaseConnection[Any]) -> None:
    """Make `conn` send the packed types as their arrays, once per connection (before
    its cursor is made: a cursor copies the connection's adapters).

    Per connection, not on the global `psycopg.adapters`: a connection copies the global
    map when it opens, so one opened before this module was imported sent the packed
    bytes as bytea ("cannot cast type bytea to text[]"; bench/scale.py's steady pass,
    whose engine connected before anything imported app.ingestion)."""
    if conn not in _ready:
        conn.adapters.register_dumper(Int8Array, _Int8ArrayDumper)
        conn.adapters.register_dumper(Float8Array, _Float8ArrayDumper)
        conn.adapters.register_dumper(TextArray, _TextArrayDumper)
        _ready.add(conn)
