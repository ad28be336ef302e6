"""Straightforward loop-and-fsum references shared by the metric tests.

Nothing here calls an app.metrics function (only its types are imported, for type
checks): the expectations must not share code with what they check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.metrics import ReliabilityBin, WindowStats

FloatArray = npt.NDArray[np.float64]


def close(a: float | None, b: float, tol: float = 1e-9) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=tol, abs_tol=tol)


@dataclass(frozen=True)
class RefBin:
    count: int
    weight: float
    mean_predicted: float | None
    observed_rate: float | None


def reference_reliability(
    predicted: list[float], outcome: list[float], weights: list[float], bins: int = 10
) -> tuple[list[RefBin], float | None]:
    """One row at a time into its bin, then the ECE straight from the definition."""
    members: list[list[int]] = [[] for _ in range(bins)]
    for i, p in enumerate(predicted):
        members[min(math.floor(p * bins), bins - 1)].append(i)
    table: list[RefBin] = []
    for rows in members:
        weight = math.fsum(weights[i] for i in rows)
        if weight > 0.0:
            mean_p = math.fsum(weights[i] * predicted[i] for i in rows) / weight
            rate = math.fsum(weights[i] * outcome[i] for i in rows) / weight
            table.append(RefBin(len(rows), weight, mean_p, rate))
        else:
            table.append(RefBin(len(rows), weight, None, None))
    total = math.fsum(weights)
    if not predicted or total == 0.0:
        return table, None
    ece = math.fsum(
        b.weight / total * abs(b.mean_predicted - b.observed_rate)
        for b in table
        if b.mean_predicted is not None and b.observed_rate is not None
    )
    return table, ece


def assert_table_matches(
    got: tuple[ReliabilityBin, ...], expected: list[RefBin], bins: int = 10
) -> None:
    assert len(got) == len(expected) == bins
    for k, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g.lower == k / bins and g.upper == (k + 1) / bins
        assert g.count == e.count, k
        assert close(g.weight, e.weight), k
        if e.mean_predicted is None or e.observed_rate is None:
            assert g.mean_predicted is None and g.observed_rate is None, k
        else:
            assert close(g.mean_predicted, e.mean_predicted), k
            assert close(g.observed_rate, e.observed_rate), k


def assert_plain_types(stats: WindowStats) -> None:
    """Every number is a plain int / float (never a numpy scalar), or None."""
    for name in WindowStats.__slots__:
        value = getattr(stats, name)
        if value is None:
            continue
        if name in ("predictions", "labeled"):
            assert type(value) is int, name
        elif name in ("class_rates", "class_log_loss"):
            assert type(value) is tuple, name
            assert all(v is None or type(v) is float for v in value), name
        elif name == "reliability":
            assert type(value) is tuple, name
            for b in value:
                assert type(b) is ReliabilityBin
                assert type(b.count) is int
                assert all(type(x) is float for x in (b.lower, b.upper, b.weight))
                for x in (b.mean_predicted, b.observed_rate):
                    assert x is None or type(x) is float
        else:
            assert type(value) is float, name
