"""Keyset pagination for list endpoints (API.md "Models: lifecycle").

A page is read with LIMIT n+1: the extra row, if any, is where the next page starts,
and its key becomes `next_cursor`. The cursor is opaque to clients (URL-safe base64 of
a tagged key) so its format can change; the tag stops a cursor of one list from being
replayed on another. Keyset rather than OFFSET: a page costs the same wherever it is,
and rows inserted before the cursor neither repeat nor shift later pages.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from fastapi import Query

from app.api.errors import query_error

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000

Kind = Literal["model", "window"]

Limit = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description=f"page size (default {DEFAULT_LIMIT}, max {MAX_LIMIT}); follow next_cursor",
    ),
]
Cursor = Annotated[
    str | None,
    Query(
        max_length=400,
        description="next_cursor of the previous page (opaque); omit for the first page",
    ),
]


def encode(kind: Kind, key: str | int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode().rstrip("=")


def decode(kind: Kind, cursor: str) -> str:
    """The key a cursor carries, or a 422 naming `cursor`."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    tag, sep, key = text.partition(":")
    if tag != kind or not sep or not key:
        raise query_error("cursor", "not a cursor of this list: pass next_cursor unchanged")
    return key


def decode_int(kind: Kind, cursor: str) -> int:
    key = decode(kind, cursor)
    if not key.lstrip("-").isdigit():
        raise query_error("cursor", "not a cursor of this list: pass next_cursor unchanged")
    return int(key)
