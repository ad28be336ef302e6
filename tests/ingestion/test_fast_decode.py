"""The msgspec fast path (app/ingestion/fast_decode.py) against the Pydantic models it
mirrors: whatever it accepts, Pydantic accepts, and the columns the service reads are the
same; what it refuses goes to Pydantic (and its 422)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

pytest.importorskip("msgspec")  # an old venv without it serves Pydantic only

from app.ingestion.columns import PredictionColumns
from app.ingestion.fast_decode import decode_prediction_batch
from app.ingestion.schemas import PredictionBatch
from app.ingestion.timestamps import parse_utc_micros


def _plain(columns: PredictionColumns) -> PredictionColumns:
    """The columns with a numpy timestamp column as a list (comparable with ==)."""
    ts = columns.timestamps_us
    return replace(columns, timestamps_us=ts.tolist() if isinstance(ts, np.ndarray) else ts)


def _check(body: bytes) -> bool:
    """True if the fast path took the body; asserts it agrees with Pydantic."""
    fast = decode_prediction_batch(body)
    if fast is None:
        return False
    try:
        slow = PredictionBatch.model_validate_json(body)
    except ValidationError as e:  # pragma: no cover - the failure being tested for
        raise AssertionError(f"fast path accepted what Pydantic refuses: {body!r}: {e}") from e
    assert _plain(fast.columns()) == PredictionColumns.of(slow.predictions)
    assert len(fast.predictions) == len(slow.predictions)
    return True


TIMESTAMPS = [  # the first 10 are valid
    "2026-11-20T10:00:00Z",
    "2026-11-20t10:00:00z",
    "2026-11-20 10:00:00Z",
    "2026-11-20T10:00:00.5+01:00",
    "2026-11-20T10:00:00.123456-05:30",
    "2026-11-20T10:00:00+0530",
    "2026-11-20T10:00:00-00:00",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    None,
    "2026-11-20T10:00:00.1234567Z",
    "2026-11-20T10:00:00.9999999Z",
    "2026-11-20T10:00Z",
    "2026-11-20T10:00:00",
    "2026-11-20",
    "2026-11-20T24:00:00Z",
    "2026-11-20T10:00:60Z",
    "2026-02-30T10:00:00Z",
    "+2026-11-20T10:00:00Z",
    "1700000000",
    1700000000,
]
STRINGS = ["a", "é", "\u2028", "", "x" * 256, "x" * 257, "a\n", "a\x00b", "DE", "a b", "-._"]
NUMBERS = [0, 1, 0.5, 0.1234567891, -0.0, 1.0000001, -1e-300, 2, 1e400, True, "0.5", None]


def _pick(draw: st.DrawFn, values: list[Any], n_valid: int) -> Any:
    """Mostly one of the first n_valid values (valid ones), sometimes any."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(values))
    return draw(st.sampled_from(values[:n_valid]))


def _record(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {"prediction_id": _pick(draw, [*STRINGS, 1, None], 1)}
    if draw(st.booleans()):
        record["timestamp"] = _pick(draw, TIMESTAMPS, 10)
    if draw(st.booleans()):
        record["score"] = _pick(draw, NUMBERS, 4)
    if draw(st.integers(0, 3)) == 0:
        names = draw(st.lists(_st_pick(STRINGS, 1), max_size=3))
        record["probabilities"] = {n: _pick(draw, NUMBERS, 4) for n in names}
    if draw(st.booleans()):
        record["model_version"] = _pick(draw, [*STRINGS, "v" * 129, None], 3)
    if draw(st.booleans()):
        n = draw(st.sampled_from([0, 1, 2, 16, 17]))
        keys = draw(st.lists(_st_pick(["a", "DE", "-._", *STRINGS], 3), min_size=1, max_size=3))
        record["segments"] = {f"{keys[i % len(keys)]}{i}": "v" for i in range(n)}
        if draw(st.booleans()):
            key = _pick(draw, ["k", *STRINGS], 1)
            record["segments"][key] = _pick(draw, STRINGS, 1)
    if draw(st.integers(0, 19)) == 0:
        record["extra"] = 1
    return record


def _st_pick(values: list[Any], n_valid: int) -> st.SearchStrategy[Any]:
    return st.one_of(st.sampled_from(values[:n_valid]), st.sampled_from(values))


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    records = [_record(draw) for _ in range(draw(st.integers(0, 3)))]
    body: dict[str, Any] = {"predictions": records}
    if draw(st.integers(0, 19)) == 0:
        body["more"] = []
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode()


@settings(max_examples=400, deadline=None)
@given(bodies())
def test_whatever_the_fast_path_accepts_pydantic_accepts_with_the_same_values(
    body: bytes,
) -> None:
    _check(body)


def test_the_fast_path_takes_ordinary_batches() -> None:
    records = [
        {
            "prediction_id": f"p{i}",
            "timestamp": "2026-11-20T10:30:00.123456Z",
            "score": 0.1234567891,
            "model_version": "v1",
            "segments": {"country": "DE", "device.type": "mobile"},
        }
        for i in range(100)
    ] + [{"prediction_id": "m", "probabilities": {"a": 0.25, "b": 0.75}}]
    assert _check(json.dumps({"predictions": records}).encode())
    # ... with their timestamps parsed as one column (not one at a time).
    assert parse_utc_micros([r["timestamp"] for r in records if "timestamp" in r]) is not None


@pytest.mark.parametrize(
    "record",
    [
        {"prediction_id": "p", "timestamp": "2026-11-20T10:00:00.1234567Z"},  # rounds/truncates
        {"prediction_id": "p", "segments": {"a\n": "x"}},  # `$` before a final newline
        {"prediction_id": "p", "timestamp": "2026-11-20T10:00:00"},  # no offset
        {"prediction_id": "p", "score": 1.5},
        {"prediction_id": "p", "segments": {f"k{i}": "v" for i in range(17)}},
    ],
)
def test_what_the_fast_path_must_leave_to_pydantic(record: dict[str, Any]) -> None:
    assert decode_prediction_batch(json.dumps({"predictions": [record]}).encode()) is None


def test_mixed_batches_give_the_same_columns() -> None:
    # Timestamps in the column parser's layouts, in others (parsed one by one), and
    # missing; segment sets repeated, distinct, empty, null and missing.
    stamps = [
        "2026-11-20T10:30:00.123456Z",
        "2026-11-20T10:30:00Z",
        "2026-11-20T10:30:00.5+01:00",
        "2026-11-20t10:30:00z",
        "2026-11-20 10:30:00+0530",
        None,
    ]
    segments = [{"country": "DE"}, {"b": "2", "a": "1"}, {}, None, "missing"]
    records = []
    for i in range(120):  # enough for the column parser (fast_decode._COLUMN_MIN)
        record: dict[str, Any] = {"prediction_id": f"p{i}", "score": i / 120}
        if (stamp := stamps[i % len(stamps)]) is not None:
            record["timestamp"] = stamp
        if (given := segments[i % len(segments)]) != "missing":
            record["segments"] = given
        records.append(record)
    assert _check(json.dumps({"predictions": records}).encode())
    # One layout only, missing timestamps and one segment set: the column paths alone.
    same = [{**r, "timestamp": stamps[0], "segments": segments[0]} for r in records[:70]]
    assert _check(json.dumps({"predictions": [*same, {"prediction_id": "x", "score": 1}]}).encode())


@pytest.mark.parametrize(
    "texts",
    [
        ["2026-11-20T10:00:00Z", "2026-11-20t10:00:00.1234567Z"],  # the general way rounds
        ["2026-11-20T10:00:00Z", "2026-11-20T10:00:00"],  # no offset
    ],
)
def test_a_batch_with_one_such_timestamp_is_left_to_pydantic(texts: list[str]) -> None:
    records = [{"prediction_id": f"p{i}", "timestamp": t} for i, t in enumerate(texts)]
    assert decode_prediction_batch(json.dumps({"predictions": records}).encode()) is None
