"""Each rule type is declared once (rules.SPECS); everything that dispatches on the
rule type reads its spec, so the spec list and the Rule union must agree."""

from __future__ import annotations

import typing
from dataclasses import fields

from app.alerting import rules
from app.alerting.points import WindowPoint
from app.windows import record


def _union_members() -> set[type]:
    union = typing.get_args(rules.Rule)[0]
    return set(typing.get_args(union))


def test_every_rule_type_has_exactly_one_spec() -> None:
    bodies = [spec.body for spec in rules.SPECS]
    assert len(bodies) == len(set(bodies))
    assert set(bodies) == _union_members()
    assert len({spec.type for spec in rules.SPECS}) == len(rules.SPECS)


def test_gate_fields_exist_on_points_and_stored_windows() -> None:
    # evaluable() reads them from WindowPoint, the SQL gate from the window tables.
    point_fields = {f.name for f in fields(WindowPoint)}
    for spec in rules.SPECS:
        for name in (spec.size_field, spec.metric):
            assert name in point_fields, (spec.type, name)
            assert name in record.NAMES, (spec.type, name)


def test_spec_of_unknown_rule_is_a_type_error() -> None:
    class Odd(rules.RuleBase):
        type: str = "odd"

    try:
        rules.spec_of(Odd())
    except TypeError as e:
        assert "Odd" in str(e)
        return
    raise AssertionError("spec_of accepted an unknown rule type")
