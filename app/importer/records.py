"""File rows -> API records (pure: no network). Columns are named as the JSON fields;
segments as `segment.<key>`, multiclass probabilities as `proba.<class>`.

Each record carries where it came from (line of a CSV/NDJSON file, row of a Parquet
file) so a rejection can name it. A value that cannot be converted (a score that is not
a number) is rejected here, naming the field; everything else is left to the server's
validation, which answers with the same index/field/message errors.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

Kind = Literal["predictions", "actuals"]
Format = Literal["csv", "parquet", "ndjson"]

SEGMENT_PREFIX = "segment."
PROBA_PREFIX = "proba."
_NUMBER_FIELDS = {"score", "weight"}
_PARQUET_BATCH_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class Located:
    """A record ready to send, or the reason it cannot be, and where it came from."""

    where: str  # "line 17" / "row 17"
    record: dict[str, Any] | None
    field: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True)
class Task:
    """What the importer knows of the target model (labels depend on it)."""

    multiclass: bool | None  # None: unknown (the key may not read models)


def detect_format(path: Path) -> Format:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".ndjson", ".jsonl")):
        return "ndjson"
    return "csv"


def _number(field: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{field} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{field} must be a finite number, got {value!r}")
    return number


_BINARY_TEXT = {"0": 0, "1": 1, "true": True, "false": False}


def _label(value: Any, task: Task) -> Any:
    """Multiclass labels as class names; binary (or unknown task) labels as 0/1 or
    true/false, since CSV cells are text."""
    if task.multiclass:
        return value if isinstance(value, str) else str(value)
    if isinstance(value, str):
        return _BINARY_TEXT.get(value.strip().lower(), value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _timestamp(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                "timestamp has no UTC offset (store it as a UTC timestamp, or as text "
                "such as 2026-11-20T10:00:00Z)"
            )
        return value.isoformat()
    return value


def to_record(row: Mapping[str, Any], kind: Kind, task: Task) -> dict[str, Any]:
    """One file row as an API record. Empty cells and nulls are left out (defaults).
    Raises ValueError("field: message") naming the field that cannot be converted."""
    record: dict[str, Any] = {}
    segments: dict[str, Any] = {}
    probabilities: dict[str, Any] = {}
    for column, value in row.items():
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            continue
        try:
            if column.startswith(SEGMENT_PREFIX) and kind == "predictions":
                segments[column[len(SEGMENT_PREFIX) :]] = str(value)
            elif column.startswith(PROBA_PREFIX) and kind == "predictions":
                probabilities[column[len(PROBA_PREFIX) :]] = _number(column, value)
            elif column in _NUMBER_FIELDS:
                record[column] = _number(column, value)
            elif column == "label":
                record[column] = _label(value, task)
            elif column == "timestamp":
                record[column] = _timestamp(value)
            elif column in ("prediction_id", "model_version"):
                record[column] = str(value) if not isinstance(value, str) else value
            else:
                record[column] = value  # nested JSON (NDJSON) or unknown: the server judges
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{column}\t{exc}") from exc
    if segments:
        record["segments"] = {**record.get("segments", {}), **segments}
    if probabilities:
        record["probabilities"] = {**record.get("probabilities", {}), **probabilities}
    return record


def _located(where: str, row: Mapping[str, Any], kind: Kind, task: Task) -> Located:
    try:
        return Located(where, to_record(row, kind, task))
    except ValueError as exc:
        field, _, message = str(exc).partition("\t")
        if not message:
            field, message = "", str(exc)
        return Located(where, None, field, message)


def count_rows(path: Path, fmt: Format) -> int | None:
    """Rows in the file, for the progress bar (None if it cannot be known cheaply)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with path.open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return max(lines - 1, 0) if fmt == "csv" else lines


def read_records(path: Path, fmt: Format, kind: Kind, task: Task) -> Iterator[Located]:
    if fmt == "csv":
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            line = 2  # the header is line 1
            for row in reader:
                yield _located(f"line {line}", row, kind, task)
                line = reader.line_num + 1
    elif fmt == "ndjson":
        with path.open(encoding="utf-8") as f:
            for n, text in enumerate(f, start=1):
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    yield Located(f"line {n}", None, "", f"not JSON: {exc.msg}")
                    continue
                if not isinstance(row, dict):
                    yield Located(f"line {n}", None, "", "not a JSON object")
                    continue
                yield _located(f"line {n}", row, kind, task)
    else:
        import pyarrow.parquet as pq

        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=_PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                n += 1
                yield _located(f"row {n}", row, kind, task)
