"""Hand-computed multiclass windows, edge cases and rejected inputs."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest

from app.metrics import (
    categorical_entropies,
    categorical_entropy,
    multiclass_losses,
    multiclass_stats_by_group,
    multiclass_window_stats,
)
from tests.metrics.reference import assert_plain_types

NEG_LN_EPS = -math.log(1e-15)

# Seed 003 names three classes (dog, cat, fish) but works no multiclass figures, so
# this small window is computed by hand instead.
PETS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.3, 0.4],
        [0.5, 0.25, 0.25],
    ]
)
PET_LABELS = np.array([0.0, 1.0, 2.0, 1.0])


def test_hand_computed_three_class_window() -> None:
    stats = multiclass_window_stats(PETS, PET_LABELS, np.ones(4))
    assert_plain_types(stats)
    assert stats.log_loss is not None and stats.expected_log_loss is not None
    true_p = [0.7, 0.8, 0.4, 0.25]
    assert stats.log_loss == pytest.approx(-sum(math.log(p) for p in true_p) / 4, rel=1e-15)
    # 003's form −Σ_c y_c ln p_c with one-hot y is the same number.
    one_hot = np.eye(3)[PET_LABELS.astype(int)]
    assert stats.log_loss == pytest.approx(float(-(one_hot * np.log(PETS)).sum() / 4))
    assert stats.class_rates == (0.25, 0.5, 0.25)
    assert stats.baseline_log_loss == pytest.approx(1.5 * math.log(2), rel=1e-15)
    assert stats.skill == pytest.approx(1 - stats.log_loss / (1.5 * math.log(2)), rel=1e-12)
    assert stats.class_log_loss == pytest.approx(
        (-math.log(0.7), -(math.log(0.8) + math.log(0.25)) / 2, -math.log(0.4)), rel=1e-15
    )
    # The arg-max of the last row is class 0, but the dog was a cat.
    assert stats.accuracy == 0.75
    # Top-label confidences 0.7, 0.8, 0.4, 0.5 with the pick right, right, right, wrong.
    assert stats.ece == pytest.approx((0.3 + 0.2 + 0.6 + 0.5) / 4, rel=1e-12)
    assert stats.reliability is not None
    assert [b.count for b in stats.reliability] == [0, 0, 0, 0, 1, 1, 0, 1, 1, 0]
    entropies = [-sum(p * math.log(p) for p in row) for row in PETS.tolist()]
    assert stats.expected_log_loss == pytest.approx(sum(entropies) / 4, rel=1e-12)
    assert stats.calibration_gap == stats.log_loss - stats.expected_log_loss
    assert stats.positive_rate is None


def test_two_class_entropy_is_binary_entropy() -> None:
    h = categorical_entropies(np.array([[0.9, 0.1], [0.5, 0.5], [0.0, 1.0]]))
    assert h[0] == pytest.approx(-(0.9 * math.log(0.9) + 0.1 * math.log(0.1)), rel=1e-15)
    assert h[1] == pytest.approx(math.log(2), rel=1e-15)
    # Clipped, so a certain row expects a tiny positive loss, never 0 ln 0 = nan.
    assert 0.0 < h[2] < 1e-13


@pytest.mark.parametrize("k", [2, 3, 4, 6])
@pytest.mark.parametrize("n", [1, 7, 1000])
def test_all_labels_one_class_has_zero_baseline_and_no_skill(k: int, n: int) -> None:
    rng = np.random.default_rng(k * n)
    p = rng.dirichlet(np.ones(k), size=n)
    # Fractional weights in many-element arrays: pairwise summation must still make the
    # class's share of the total exactly 1.0.
    weights = rng.uniform(0.01, 3.0, size=n)
    for cls in range(k):
        stats = multiclass_window_stats(p, np.full(n, float(cls)), weights)
        assert stats.class_rates is not None
        assert stats.class_rates[cls] == 1.0
        assert sum(stats.class_rates) == 1.0
        assert stats.baseline_log_loss == 0.0
        assert math.copysign(1.0, stats.baseline_log_loss) == 1.0  # +0.0, not -0.0
        assert stats.skill is None
        assert stats.log_loss is not None
        assert stats.class_log_loss is not None
        assert [v is None for v in stats.class_log_loss] == [c != cls for c in range(k)]


def test_other_classes_with_zero_weight_still_give_zero_baseline() -> None:
    rng = np.random.default_rng(3)
    n = 500
    p = rng.dirichlet(np.ones(3), size=n)
    labels = np.where(np.arange(n) % 5 == 0, 2.0, 0.0)
    # Class 2's rows weigh nothing, so the window holds class 0 only, even though the
    # interspersed zeros make the total a differently rounded sum than class 0's own.
    weights = np.where(labels == 2.0, 0.0, rng.uniform(0.01, 3.0, size=n))
    stats = multiclass_window_stats(p, labels, weights)
    assert stats.baseline_log_loss == 0.0 and stats.skill is None
    assert stats.class_log_loss is not None and stats.class_log_loss[2] is None


def test_categorical_entropy_of_a_certain_class_is_exactly_zero() -> None:
    assert categorical_entropy(np.array([0.0, 1.0, 0.0])) == 0.0
    assert categorical_entropy(np.array([0.0, 0.9999999999999999, 0.0])) == 0.0
    assert categorical_entropy(np.array([1.0, 1e-300])) == 0.0
    assert categorical_entropy(np.array([0.5, 0.5])) == pytest.approx(math.log(2), rel=1e-15)


def test_true_class_probability_zero_costs_minus_ln_eps() -> None:
    losses = multiclass_losses(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), np.array([0, 0]))
    assert losses[0] == NEG_LN_EPS
    assert 0.0 < losses[1] < 1e-14
    # Integer-valued float labels index the same way.
    assert multiclass_losses(np.array([[0.0, 1.0]]), np.array([0.0]))[0] == NEG_LN_EPS
    stats = multiclass_window_stats(np.array([[0.0, 1.0, 0.0]]), np.array([0.0]), np.ones(1))
    assert stats.log_loss == NEG_LN_EPS
    assert stats.accuracy == 0.0
    assert multiclass_losses(np.array([[0.0, 1.0]]), np.array([0]), 1e-3)[0] == -math.log(1e-3)


def test_rows_are_not_renormalised() -> None:
    # The row sums to 0.5; renormalising would make the true class 0.6, not 0.3.
    losses = multiclass_losses(np.array([[0.3, 0.1, 0.1]]), np.array([0]))
    assert losses[0] == -math.log(0.3)


def test_argmax_tie_goes_to_the_first_class() -> None:
    p = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2]])
    stats = multiclass_window_stats(p, np.array([0.0, 1.0]), np.ones(2))
    assert stats.accuracy == 0.5


def test_unlabeled_empty_and_weightless_windows() -> None:
    p = np.array([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    labels = np.array([1.0, np.nan, 0.0])
    weights = np.array([2.0, np.nan, 1.0])  # unlabeled weights are ignored
    stats = multiclass_window_stats(p, labels, weights)
    assert (stats.predictions, stats.labeled, stats.weight_sum) == (3, 2, 3.0)
    assert stats.label_coverage == pytest.approx(2 / 3)
    assert stats.class_rates == pytest.approx((1 / 3, 2 / 3))

    unlabeled = multiclass_window_stats(p, np.full(3, np.nan), np.ones(3))
    assert (unlabeled.labeled, unlabeled.label_coverage, unlabeled.weight_sum) == (0, 0.0, 0.0)
    assert unlabeled.expected_log_loss is not None
    assert unlabeled.log_loss is None and unlabeled.class_rates is None
    assert unlabeled.reliability is None and unlabeled.calibration_gap is None
    assert_plain_types(unlabeled)

    weightless = multiclass_window_stats(p, labels, np.array([0.0, 1.0, 0.0]))
    assert weightless.labeled == 2 and weightless.weight_sum == 0.0
    assert weightless.log_loss is None and weightless.accuracy is None
    assert weightless.class_log_loss is None and weightless.ece is None

    empty = multiclass_window_stats(np.empty((0, 3)), np.array([]), np.array([]))
    assert empty.predictions == 0 and empty.label_coverage is None
    assert empty.expected_log_loss is None and empty.log_loss is None
    assert multiclass_stats_by_group(np.array([], dtype=np.int64), np.empty((0, 3)), [], []) == {}


def test_stats_by_group_small() -> None:
    keys = np.array([7200, 3600, 7200, 3600], dtype=np.int64)
    groups = multiclass_stats_by_group(keys, PETS, PET_LABELS, np.ones(4))
    assert list(groups) == [3600, 7200]
    assert groups[3600] == multiclass_window_stats(PETS[[1, 3]], PET_LABELS[[1, 3]], np.ones(2))
    assert groups[7200] == multiclass_window_stats(PETS[[0, 2]], PET_LABELS[[0, 2]], np.ones(2))


ONE = np.ones(1)
P3 = np.array([[0.2, 0.3, 0.5]])


@pytest.mark.parametrize(
    ("probabilities", "labels", "weights"),
    [
        (np.array([0.2, 0.8]), np.array([1.0, 0.0]), np.ones(2)),  # 1-D
        (np.array([[1.0], [1.0]]), np.array([0.0, 0.0]), np.ones(2)),  # K = 1
        (P3, np.array([0.0, 1.0]), np.ones(2)),  # n mismatch
        (P3, np.array([0.0]), np.ones(2)),  # weights mismatch
        (np.array([[0.2, 1.3, 0.5]]), np.array([0.0]), ONE),  # p > 1
        (np.array([[0.2, -0.1, 0.5]]), np.array([0.0]), ONE),  # p < 0
        (np.array([[0.2, np.nan, 0.5]]), np.array([0.0]), ONE),
        (P3, np.array([3.0]), ONE),  # class out of range
        (P3, np.array([-1.0]), ONE),  # would silently index the last class
        (P3, np.array([1.5]), ONE),
        (P3, np.array([np.inf]), ONE),
        (P3, np.array([1.0]), np.array([-1.0])),
        (P3, np.array([1.0]), np.array([np.nan])),
        (P3, np.array([1.0]), np.array([np.inf])),
    ],
)
def test_invalid_window_inputs_rejected(
    probabilities: npt.NDArray[np.float64],
    labels: npt.NDArray[np.float64],
    weights: npt.NDArray[np.float64],
) -> None:
    with pytest.raises(ValueError):
        multiclass_window_stats(probabilities, labels, weights)


def test_invalid_loss_and_group_inputs_rejected() -> None:
    for labels in (np.array([3]), np.array([-1]), np.array([0.5]), np.array([True])):
        with pytest.raises(ValueError):
            multiclass_losses(P3, labels)
    with pytest.raises(ValueError):
        multiclass_losses(np.array([0.2, 0.8]), np.array([1]))
    with pytest.raises(ValueError):
        multiclass_losses(P3, np.array([0, 1]))
    with pytest.raises(ValueError):
        multiclass_losses(P3, np.array([0]), eps=0.0)
    with pytest.raises(ValueError):
        multiclass_stats_by_group(np.array([0.5]), P3, np.array([0.0]), ONE)
    with pytest.raises(ValueError):
        multiclass_stats_by_group(np.array([1, 2]), P3, np.array([0.0]), ONE)
