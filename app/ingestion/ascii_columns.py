"""A column of texts as one block of bytes, when every text is ASCII and of one width:
what numpy can then read as an (n, width) array in one pass. Ids (UUIDs, zero-padded
counters) and timestamps of one layout usually are (pg_arrays.py, timestamps.py)."""

from __future__ import annotations

from collections.abc import Sequence


def one_width_ascii(texts: Sequence[str]) -> bytes | None:
    """The texts joined, len(texts) x the first one's width bytes, when every text is
    ASCII and that wide; None otherwise (also for no texts or an empty first one)."""
    if not texts or not (width := len(texts[0])):
        return None
    joined = "".join(texts)
    # isascii() is a flag lookup on the joined str. The total length alone could hide
    # texts whose widths make up for each other: each one's length is counted too (in C).
    if len(joined) != width * len(texts) or not joined.isascii():
        return None
    if list(map(len, texts)).count(width) != len(texts):
        return None
    return joined.encode("ascii")
