"""Paired model comparison against a reference computed on the joined rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.metrics import PairedDifference, paired_by_group, paired_difference, weighted_stderr
from tests.metrics.reference import close

BOUNDED = settings(max_examples=200, deadline=None)

loss_st = st.one_of(st.sampled_from([0.0, -math.log(1e-15)]), st.floats(0.0, 40.0))
weight_st = st.one_of(st.just(1.0), st.just(0.0), st.floats(1e-3, 1e3))
ids_st = st.lists(st.integers(0, 60), max_size=50, unique=True)
KEY_POOL = [0, 3600, 7200]


@st.composite
def scored(draw: st.DrawFn) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Each model's losses by prediction id (each model scored only some ids)."""
    ids_a = draw(ids_st)
    ids_b = draw(ids_st)
    every = sorted(set(ids_a) | set(ids_b))
    weight = {i: draw(weight_st) for i in every}
    return {i: draw(loss_st) for i in ids_a}, {i: draw(loss_st) for i in ids_b}, weight


def reference(
    a: dict[int, float], b: dict[int, float], weight: dict[int, float], ids: list[int]
) -> PairedDifference:
    total = math.fsum(weight[i] for i in ids)
    if not ids or total == 0.0:
        return PairedDifference(len(ids), total, None, None, None, None)
    diff = math.fsum(weight[i] * (b[i] - a[i]) for i in ids) / total
    stderr = None
    if len(ids) >= 2:
        sq = math.fsum((weight[i] * (b[i] - a[i] - diff)) ** 2 for i in ids)
        stderr = math.sqrt(len(ids) / (len(ids) - 1) * sq) / total
    return PairedDifference(
        n=len(ids),
        weight_sum=total,
        log_loss_a=math.fsum(weight[i] * a[i] for i in ids) / total,
        log_loss_b=math.fsum(weight[i] * b[i] for i in ids) / total,
        difference=diff,
        difference_stderr=stderr,
    )


def assert_matches(got: PairedDifference, ref: PairedDifference) -> None:
    assert got.n == ref.n and type(got.n) is int
    assert type(got.weight_sum) is float and close(got.weight_sum, ref.weight_sum)
    for name in ("log_loss_a", "log_loss_b", "difference", "difference_stderr"):
        expected = getattr(ref, name)
        value = getattr(got, name)
        if expected is None:
            assert value is None, name
        else:
            assert type(value) is float, name
            assert close(value, expected), name


@BOUNDED
@given(scored())
def test_paired_difference_matches_reference_on_the_intersection(
    data: tuple[dict[int, float], dict[int, float], dict[int, float]],
) -> None:
    a, b, weight = data
    both = sorted(set(a) & set(b))
    got = paired_difference(
        np.array([a[i] for i in both]),
        np.array([b[i] for i in both]),
        np.array([weight[i] for i in both]),
    )
    assert_matches(got, reference(a, b, weight, both))


@BOUNDED
@given(scored(), st.data())
def test_paired_by_group_matches_reference_and_direct_calls(
    data: tuple[dict[int, float], dict[int, float], dict[int, float]], draw: st.DataObject
) -> None:
    a, b, weight = data
    both = sorted(set(a) & set(b))
    key = {i: draw.draw(st.sampled_from(KEY_POOL)) for i in both}
    keys = np.array([key[i] for i in both], dtype=np.int64)
    la = np.array([a[i] for i in both])
    lb = np.array([b[i] for i in both])
    w = np.array([weight[i] for i in both])
    groups = paired_by_group(keys, la, lb, w)
    assert sorted(groups) == sorted(set(key.values()))
    for group, got in groups.items():
        rows = keys == group
        assert got == paired_difference(la[rows], lb[rows], w[rows])
        assert_matches(got, reference(a, b, weight, [i for i in both if key[i] == group]))


def test_hand_computed_pair() -> None:
    # Model b is worse by 0.1 on the first row and better by 0.3 on the second, which
    # weighs three times as much: D = (0.1 - 3 * 0.3) / 4 = -0.2.
    got = paired_difference(np.array([0.5, 1.0]), np.array([0.6, 0.7]), np.array([1.0, 3.0]))
    assert got.n == 2 and got.weight_sum == 4.0
    assert got.log_loss_a == pytest.approx(3.5 / 4, rel=1e-15)
    assert got.log_loss_b == pytest.approx(2.7 / 4, rel=1e-15)
    assert got.difference == pytest.approx(-0.2, rel=1e-12)
    assert got.log_loss_a is not None and got.log_loss_b is not None
    assert got.difference == pytest.approx(got.log_loss_b - got.log_loss_a, rel=1e-12)
    # sqrt(2 * ((1 * 0.3)^2 + (3 * -0.1)^2)) / 4 = sqrt(0.36) / 4 = 0.15
    assert got.difference_stderr == pytest.approx(0.15, rel=1e-12)


def test_identical_models_differ_by_exactly_zero() -> None:
    losses = np.array([0.1, 2.0, 0.7, 34.5])
    got = paired_difference(losses, losses, np.array([1.0, 0.5, 2.0, 0.1]))
    assert got.difference == 0.0 and got.difference_stderr == 0.0
    assert got.log_loss_a == got.log_loss_b


def test_empty_single_and_weightless() -> None:
    empty = np.array([], dtype=np.float64)
    assert paired_difference(empty, empty, empty) == PairedDifference(
        0, 0.0, None, None, None, None
    )
    single = paired_difference(np.array([0.4]), np.array([0.9]), np.array([2.0]))
    assert single.difference == pytest.approx(0.5) and single.difference_stderr is None
    weightless = paired_difference(np.array([0.4, 0.1]), np.array([0.9, 0.2]), np.zeros(2))
    assert weightless == PairedDifference(2, 0.0, None, None, None, None)
    assert paired_by_group(np.array([], dtype=np.int64), empty, empty, empty) == {}


def test_stderr_is_the_log_loss_stderr_formula_on_the_differences() -> None:
    rng = np.random.default_rng(1)
    a, b, w = rng.uniform(0, 3, 50), rng.uniform(0, 3, 50), rng.uniform(0.1, 2, 50)
    got = paired_difference(a, b, w)
    assert got.difference is not None
    assert got.difference_stderr == weighted_stderr(b - a, w, got.difference)


@pytest.mark.parametrize(
    ("a", "b", "w"),
    [
        ([0.1, 0.2], [0.1], [1.0, 1.0]),
        ([0.1], [0.1], [1.0, 1.0]),
        ([[0.1]], [[0.1]], [[1.0]]),
        ([math.nan], [0.1], [1.0]),
        ([0.1], [math.inf], [1.0]),
        ([0.1], [0.1], [-1.0]),
        ([0.1], [0.1], [math.nan]),
    ],
)
def test_invalid_inputs_rejected(a: list[float], b: list[float], w: list[float]) -> None:
    with pytest.raises(ValueError):
        paired_difference(np.array(a), np.array(b), np.array(w))


def test_invalid_group_keys_rejected() -> None:
    one = np.ones(1)
    with pytest.raises(ValueError):
        paired_by_group(np.array([0.5]), one, one, one)
    with pytest.raises(ValueError):
        paired_by_group(np.array([1, 2]), one, one, one)
