"""The column parser of event timestamps (app/ingestion/timestamps.py) against Pydantic's
datetime, the contract's definition: what the parser takes, Pydantic takes with the same
instant; what it leaves (None), the caller parses the general way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from app.ingestion.timestamps import as_utc_micros, parse_utc_micros
from app.json_types import Timestamp

_PYDANTIC = TypeAdapter(Timestamp)


def _pydantic_micros(text: str) -> int | None:
    try:
        return as_utc_micros(_PYDANTIC.validate_json(f'"{text}"'))
    except ValidationError:
        return None


# Field values around every bound (and past it), formatted in the layouts the parser
# takes, so most texts are valid and the invalid ones are invalid in one field.
@st.composite
def layout_texts(draw: st.DrawFn) -> str:
    year = draw(st.sampled_from([0, 1, 4, 100, 1600, 1900, 1969, 1970, 2000, 2026, 9999]))
    month = draw(st.integers(0, 13))
    day = draw(st.sampled_from([0, 1, 28, 29, 30, 31, 32]))
    hour, minute = draw(st.integers(0, 24)), draw(st.integers(0, 60))
    second = draw(st.integers(0, 60))
    digits = draw(st.integers(0, 6))
    fraction = "." + draw(st.text("0123456789", min_size=digits, max_size=digits)) if digits else ""
    zone = draw(
        st.one_of(
            st.just("Z"),
            st.builds(
                lambda sign, h, m: f"{sign}{h:02d}:{m:02d}",
                st.sampled_from("+-"),
                st.integers(0, 24),
                st.integers(0, 60),
            ),
        )
    )
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}{zone}"


@settings(max_examples=2_000, deadline=None)
@given(layout_texts())
def test_a_text_it_parses_is_the_instant_pydantic_reads(text: str) -> None:
    parsed = parse_utc_micros([text])
    expected = _pydantic_micros(text)
    if parsed is None:
        return  # left to the general way
    assert parsed.tolist() == [expected], text


@settings(max_examples=300, deadline=None)
@given(st.lists(layout_texts(), min_size=1, max_size=40))
def test_a_column_is_parsed_as_each_of_its_texts(texts: list[str]) -> None:
    each = [parse_utc_micros([t]) for t in texts]
    column = parse_utc_micros(texts)
    # A column takes a few lengths, each with one layout (the zone decides it).
    layouts = {(len(t), t.endswith("Z")) for t in texts}
    one_layout_per_length = len(layouts) == len({n for n, _ in layouts}) <= 4
    if all(e is not None for e in each) and one_layout_per_length:
        assert column is not None
        assert column.tolist() == [e[0] for e in each if e is not None]
    else:
        assert column is None


def test_it_parses_what_serving_systems_send() -> None:
    base = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    stamps = [base + timedelta(microseconds=7 * k**3) for k in range(500)]
    texts = [s.isoformat() for s in stamps]  # Python drops a zero fraction: two lengths
    texts += [s.isoformat(timespec="milliseconds").replace("+00:00", "Z") for s in stamps]
    texts += [s.astimezone(timezone(timedelta(hours=-5))).isoformat() for s in stamps]
    texts += ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999999+00:00", "2024-02-29T00:00:00Z"]
    assert len({len(t) for t in texts}) > 1
    parsed = parse_utc_micros(texts)
    assert parsed is not None
    assert parsed.tolist() == [_pydantic_micros(t) for t in texts]


def test_texts_of_other_lengths_cannot_pass_for_one_column() -> None:
    # Two texts whose lengths make up for each other, the second starting with the
    # first's missing 'Z': rows cut at the first's length would both look valid.
    texts = ["2026-11-20T10:00:00.123456", "Z2026-11-20T10:00:00.123456Z"]
    assert parse_utc_micros(texts) is None
    assert parse_utc_micros(["2026-11-20T10:00:00Z|", "2026-11-20T10:00:00Z"]) is None


def test_it_leaves_other_spellings_to_the_general_way() -> None:
    for text in [
        "2026-11-20t10:00:00Z",
        "2026-11-20 10:00:00Z",
        "2026-11-20T10:00:00z",
        "2026-11-20T10:00:00+0100",
        "2026-11-20T10:00:00.1234567Z",  # Pydantic truncates, msgspec rounds
        "2026-11-20T10:00:60Z",
        "2026-02-29T10:00:00Z",
        "0000-01-01T00:00:00Z",
        "2026-11-20T10:00:00",
        "２０２６-11-20T10:00:00Z",
        "",
    ]:
        assert parse_utc_micros([text]) is None, text
    assert parse_utc_micros([]) is not None
