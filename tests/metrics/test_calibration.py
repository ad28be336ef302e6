"""Reliability table and ECE against a loop-based reference and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.metrics import ReliabilityBin, reliability_table
from tests.metrics.reference import (
    assert_table_matches,
    close,
    reference_reliability,
)

BOUNDED = settings(max_examples=200, deadline=None)

# Bin edges and their neighbours are where an off-by-one in the binning would show.
predicted_st = st.one_of(
    st.sampled_from([0.0, 1.0, 0.1, 0.5, 0.9, 0.3, 0.7, 0.99999999, 1e-300]),
    st.floats(min_value=0.0, max_value=1.0, allow_subnormal=True),
)
# Zero weights make bins with rows but no weight, where the means are 0 / 0.
weight_st = st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=1e3))


@st.composite
def rows(draw: st.DrawFn) -> tuple[list[float], list[float], list[float]]:
    n = draw(st.integers(min_value=0, max_value=80))
    predicted = draw(st.lists(predicted_st, min_size=n, max_size=n))
    # Mostly 0/1 outcomes as in the windows, sometimes fractional ones (allowed too).
    outcome = draw(
        st.lists(
            st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)), min_size=n, max_size=n
        )
    )
    if draw(st.booleans()):
        weights = [1.0] * n
    else:
        weights = draw(st.lists(weight_st, min_size=n, max_size=n))
    return predicted, outcome, weights


@BOUNDED
@given(rows(), st.sampled_from([10, 10, 1, 3, 7]))
def test_reliability_matches_loop_reference(
    data: tuple[list[float], list[float], list[float]], bins: int
) -> None:
    predicted, outcome, weights = data
    table, ece = reliability_table(
        np.array(predicted, dtype=np.float64),
        np.array(outcome, dtype=np.float64),
        np.array(weights, dtype=np.float64),
        bins,
    )
    ref_table, ref_ece = reference_reliability(predicted, outcome, weights, bins)
    assert_table_matches(table, ref_table, bins)
    assert sum(b.count for b in table) == len(predicted)
    if ref_ece is None:
        assert ece is None
    else:
        assert type(ece) is float
        assert close(ece, ref_ece)
        assert 0.0 <= ece <= 1.0 + 1e-12


def test_perfectly_calibrated_toy_data_has_zero_ece() -> None:
    # In each bin the mean prediction equals the outcome rate: 0.25 -> 1 of 4 happened,
    # 0.5 -> 1 of 2, 0.75 -> 3 of 4, 1.0 -> always.
    predicted = np.array([0.25] * 4 + [0.5] * 2 + [0.75] * 4 + [1.0] * 3)
    outcome = np.array([1, 0, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1], dtype=np.float64)
    table, ece = reliability_table(predicted, outcome, np.ones(predicted.size))
    assert ece == 0.0
    assert [b.count for b in table] == [0, 0, 4, 0, 0, 2, 0, 4, 0, 3]
    assert table[2].mean_predicted == 0.25 and table[2].observed_rate == 0.25
    # p = 1.0 belongs to the last bin, [0.9, 1.0].
    assert table[9] == ReliabilityBin(0.9, 1.0, 3, 3.0, 1.0, 1.0)
    assert table[0] == ReliabilityBin(0.0, 0.1, 0, 0.0, None, None)


def test_confident_and_always_wrong_has_ece_of_the_confidence() -> None:
    table, ece = reliability_table(np.full(7, 0.9), np.zeros(7), np.ones(7))
    assert ece == pytest.approx(0.9, rel=1e-15)
    assert table[9].count == 7 and table[9].observed_rate == 0.0
    assert table[9].mean_predicted == pytest.approx(0.9, rel=1e-15)


def test_weights_shift_the_bin_means_and_the_ece() -> None:
    # Bin 2 (p = 0.2, 0.25): weights 1 and 3 -> mean p = 0.2375, outcome rate 3/4 ->
    # gap 0.5125. Bin 8 (p = 0.8): weight 4, outcome 1 -> gap 0.2.
    # ECE = (4 * 0.5125 + 4 * 0.2) / 8 = 0.35625.
    predicted = np.array([0.2, 0.25, 0.8])
    outcome = np.array([0.0, 1.0, 1.0])
    weights = np.array([1.0, 3.0, 4.0])
    table, ece = reliability_table(predicted, outcome, weights)
    assert table[2].count == 2 and table[2].weight == 4.0
    assert table[2].mean_predicted == pytest.approx(0.2375, rel=1e-15)
    assert table[2].observed_rate == 0.75
    assert table[8].mean_predicted == 0.8 and table[8].observed_rate == 1.0
    assert ece == pytest.approx(0.35625, rel=1e-15)


def test_no_rows_or_no_weight_gives_no_ece() -> None:
    empty = np.array([], dtype=np.float64)
    table, ece = reliability_table(empty, empty, empty)
    assert ece is None and len(table) == 10
    assert all(b.count == 0 and b.mean_predicted is None for b in table)
    table, ece = reliability_table(np.array([0.4, 0.6]), np.array([1.0, 0.0]), np.zeros(2))
    assert ece is None
    # The rows are still counted, but their means are 0 / 0.
    assert table[4].count == 1 and table[4].weight == 0.0 and table[4].mean_predicted is None


def test_single_bin_is_overall_calibration_in_the_large() -> None:
    predicted = np.array([0.1, 0.4, 0.9, 1.0])
    outcome = np.array([0.0, 1.0, 1.0, 1.0])
    table, ece = reliability_table(predicted, outcome, np.ones(4), bins=1)
    assert len(table) == 1 and table[0].count == 4
    assert ece == pytest.approx(abs(2.4 / 4 - 0.75), rel=1e-12)


@pytest.mark.parametrize(
    ("predicted", "outcome", "weights", "bins"),
    [
        ([1.2], [1.0], [1.0], 10),
        ([-0.1], [1.0], [1.0], 10),
        ([math.nan], [1.0], [1.0], 10),
        ([0.5], [2.0], [1.0], 10),
        ([0.5], [math.nan], [1.0], 10),
        ([0.5], [1.0], [-1.0], 10),
        ([0.5], [1.0], [math.inf], 10),
        ([0.5, 0.2], [1.0], [1.0], 10),
        ([0.5], [1.0], [1.0], 0),
    ],
)
def test_invalid_inputs_rejected(
    predicted: list[float], outcome: list[float], weights: list[float], bins: int
) -> None:
    with pytest.raises(ValueError):
        reliability_table(np.array(predicted), np.array(outcome), np.array(weights), bins)
