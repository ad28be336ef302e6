"""Which input column holds which field (`--columns FILE.toml`).

Defaults are the JSON field names of the HTTP API, and the import CLI's conventions for
the nested fields: `segment.<key>` columns for segments, `proba.<class>` columns for a
multiclass model's probabilities. A TOML file overrides any of them:

    [predictions]
    prediction_id = "request_id"
    timestamp = "ts"
    score = "p"
    [predictions.segments]      # segment key = column (replaces the segment.* discovery)
    country = "geo"
    [predictions.probabilities] # class = column
    cat = "p_cat"
    [actuals]
    prediction_id = "request_id"
    label = "y"
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PREDICTION_FIELDS = ("prediction_id", "timestamp", "score", "model_version")
ACTUAL_FIELDS = ("prediction_id", "label", "timestamp", "weight")
SEGMENT_PREFIX = "segment."
PROBA_PREFIX = "proba."


class ColumnsFileError(ValueError):
    """The --columns file is unreadable or names an unknown field."""


@dataclass(frozen=True)
class ColumnMap:
    predictions: dict[str, str] = field(default_factory=dict)
    actuals: dict[str, str] = field(default_factory=dict)
    # None: discover `segment.<key>` / `proba.<class>` columns in the input.
    segments: dict[str, str] | None = None
    probabilities: dict[str, str] | None = None

    def prediction(self, name: str) -> str:
        return self.predictions.get(name, name)

    def actual(self, name: str) -> str:
        return self.actuals.get(name, name)

    def segment_columns(self, available: list[str]) -> dict[str, str]:
        """segment key -> input column."""
        if self.segments is not None:
            return dict(self.segments)
        return {
            c[len(SEGMENT_PREFIX) :]: c
            for c in available
            if c.startswith(SEGMENT_PREFIX) and len(c) > len(SEGMENT_PREFIX)
        }

    def probability_columns(self, classes: list[str]) -> dict[str, str]:
        """class -> input column, in the model's class order."""
        mapped = self.probabilities or {}
        return {c: mapped.get(c, f"{PROBA_PREFIX}{c}") for c in classes}


def _strings(table: Any, where: str, allowed: tuple[str, ...] | None) -> dict[str, str]:
    if not isinstance(table, Mapping):
        raise ColumnsFileError(f"[{where}] must be a table")
    out: dict[str, str] = {}
    for k, v in table.items():
        if isinstance(v, Mapping):
            continue  # a sub-table, read by the caller
        if allowed is not None and k not in allowed:
            raise ColumnsFileError(
                f"[{where}] has unknown field {k!r}; known: {', '.join(allowed)}"
            )
        if not isinstance(v, str) or not v:
            raise ColumnsFileError(f"[{where}] {k} must be a non-empty column name")
        out[str(k)] = v
    return out


def parse(data: Mapping[str, Any]) -> ColumnMap:
    unknown = set(data) - {"predictions", "actuals"}
    if unknown:
        raise ColumnsFileError(f"unknown table(s) {sorted(unknown)}; use [predictions], [actuals]")
    pred = data.get("predictions", {})
    act = data.get("actuals", {})
    predictions = _strings(pred, "predictions", PREDICTION_FIELDS)
    actuals = _strings(act, "actuals", ACTUAL_FIELDS)
    segments = pred.get("segments") if isinstance(pred, Mapping) else None
    probabilities = pred.get("probabilities") if isinstance(pred, Mapping) else None
    return ColumnMap(
        predictions=predictions,
        actuals=actuals,
        segments=None if segments is None else _strings(segments, "predictions.segments", None),
        probabilities=None
        if probabilities is None
        else _strings(probabilities, "predictions.probabilities", None),
    )


def load(path: Path | None) -> ColumnMap:
    if path is None:
        return ColumnMap()
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ColumnsFileError(f"{path}: {exc}") from exc
    return parse(data)
