"""The base every alert rule body shares (rules.py, window_rules.py)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


def _type_is_required(schema: dict[str, Any]) -> None:
    # The discriminated union needs `type` in every API body (the Python default only
    # serves direct construction), so the published schema must say it is required.
    required = schema.setdefault("required", [])
    if "type" not in required:
        required.insert(0, "type")


class RuleBase(BaseModel):
    # Rule bodies come from API clients and are stored verbatim as JSON: unknown keys
    # are rejected (a typo like "treshold" must not silently fall back to a default) and
    # a parsed rule is immutable so it can be shared safely.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_type_is_required)
