"""The worked figures of the seed articles (shared/seeds/README.md) as test vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss as sk_log_loss

from app.metrics import (
    WindowStats,
    baseline_log_loss,
    binary_entropy,
    binary_losses,
    binary_window_stats,
    categorical_entropy,
    clip,
    stats_by_group,
    weighted_log_loss,
    weighted_quantile,
    weighted_stderr,
)
from tests.metrics.reference import assert_plain_types

# Table 1/2 of article 000: actual clicks of the ten users (five of ten clicked).
BALANCED_LABELS = np.array([1, 0, 1, 1, 1, 0, 0, 1, 0, 0], dtype=np.float64)
# Table 1 "corrected probabilities" are P(class that happened); P(click) is 1 - that
# for the users who did not click.
TABLE1_CORRECTED = np.array([0.80, 0.90, 0.65, 0.78, 0.91, 0.80, 0.35, 0.87, 0.78, 0.67])
TABLE1_SCORES = np.where(BALANCED_LABELS == 1.0, TABLE1_CORRECTED, 1.0 - TABLE1_CORRECTED)

IMBALANCED_LABELS = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.float64)
TABLE4_SCORES = np.array([0.80, 0.10, 0.20, 0.10, 0.15, 0.22, 0.10, 0.20, 0.15, 0.12])

LR_X = np.array([-2.2, -1.4, -0.8, 0.2, 0.4, 0.8, 1.2, 2.2, 2.9, 4.6])
LR_Y = np.array([0, 0, 1, 0, 1, 1, 1, 1, 1, 1])

ONES = np.ones(10)
NEG_LN_EPS = -math.log(1e-15)


def _window(scores: np.ndarray, labels: np.ndarray) -> WindowStats:
    return binary_window_stats(scores, labels, np.ones_like(scores))


def test_table1_trained_balanced() -> None:
    stats = _window(TABLE1_SCORES, BALANCED_LABELS)
    assert stats.log_loss is not None
    assert round(stats.log_loss, 4) == 0.3163
    # The corrected-probability form (every row "y = 1") is the same number.
    corrected = weighted_log_loss(binary_losses(TABLE1_CORRECTED, ONES), ONES)
    assert corrected == pytest.approx(stats.log_loss, rel=1e-12)
    assert stats.positive_rate == 0.5
    assert stats.baseline_log_loss == pytest.approx(math.log(2), rel=1e-15)
    assert stats.skill == pytest.approx(1 - stats.log_loss / math.log(2), rel=1e-12)


def test_table2_naive_balanced_is_ln2() -> None:
    stats = _window(np.full(10, 0.5), BALANCED_LABELS)
    assert stats.log_loss is not None
    assert round(stats.log_loss, 4) == 0.6931
    assert stats.log_loss == pytest.approx(math.log(2), rel=1e-15)
    # The naive model is the baseline, so it has no skill.
    assert stats.skill == pytest.approx(0.0, abs=1e-15)


def test_table3_naive_imbalanced_is_entropy_of_base_rate() -> None:
    stats = _window(np.full(10, 0.1), IMBALANCED_LABELS)
    assert stats.log_loss is not None
    assert round(stats.log_loss, 4) == 0.3251
    assert round(baseline_log_loss(0.1), 4) == 0.3251
    assert stats.log_loss == pytest.approx(baseline_log_loss(0.1), rel=1e-14)
    assert baseline_log_loss(0.1) == pytest.approx(-(0.1 * math.log(0.1) + 0.9 * math.log(0.9)))
    assert stats.baseline_log_loss == pytest.approx(baseline_log_loss(0.1), rel=1e-15)
    assert stats.skill == pytest.approx(0.0, abs=1e-14)


def test_table4_trained_imbalanced() -> None:
    stats = _window(TABLE4_SCORES, IMBALANCED_LABELS)
    assert stats.log_loss is not None and stats.baseline_log_loss is not None
    assert round(stats.log_loss, 4) == 0.1687
    assert round(stats.baseline_log_loss, 4) == 0.3251
    assert stats.positive_rate == pytest.approx(0.1, rel=1e-15)
    assert stats.skill == pytest.approx(1 - stats.log_loss / stats.baseline_log_loss)
    assert stats.skill is not None and stats.skill > 0
    assert stats.accuracy == 1.0


def test_clipping_makes_certain_mistakes_finite() -> None:
    losses = binary_losses(np.array([0.0, 1.0]), np.array([1.0, 0.0]))
    assert np.all(np.isfinite(losses))
    # p = 0 clips to exactly 1e-15, so the loss is exactly -ln(1e-15).
    assert losses[0] == NEG_LN_EPS
    assert round(float(losses[0]), 4) == 34.5388
    # 1 - 1e-15 is not representable: p = 1 clips to the nearest double, whose
    # complement is 9.992e-16, so this side costs 34.5396 -- "about 34.54" in the seed.
    assert losses[1] == -math.log(1.0 - (1.0 - 1e-15))
    assert round(float(losses[1]), 2) == 34.54
    # Certain and right costs (almost) nothing.
    right = binary_losses(np.array([1.0, 0.0]), np.array([1.0, 0.0]))
    assert np.all(right < 1e-14)


def test_clip_minmax_rule() -> None:
    p = np.array([-0.0, 0.0, 1e-20, 0.3, 1.0 - 1e-18, 1.0])
    assert clip(p).tolist() == [1e-15, 1e-15, 1e-15, 0.3, 1.0 - 1e-15, 1.0 - 1e-15]
    assert clip(p, 1e-3).tolist() == [1e-3, 1e-3, 1e-3, 0.3, 1.0 - 1e-3, 1.0 - 1e-3]
    for bad in (0.0, 0.5, -1e-3):
        with pytest.raises(ValueError):
            clip(p, bad)


def test_baseline_is_zero_when_labels_agree_and_skill_is_null() -> None:
    assert baseline_log_loss(0.0) == 0.0
    assert baseline_log_loss(1.0) == 0.0
    assert math.copysign(1.0, baseline_log_loss(1.0)) == 1.0  # +0.0, not -0.0
    for label in (0.0, 1.0):
        # Fractional weights: q must still come out as exactly 0 or 1.
        weights = np.array([0.1, 0.7, 0.3, 1.9, 0.2])
        stats = binary_window_stats(np.array([0.2, 0.9, 0.4, 0.6, 0.5]), np.full(5, label), weights)
        assert stats.positive_rate == label
        assert stats.baseline_log_loss == 0.0
        assert stats.skill is None
        assert stats.log_loss is not None
    with pytest.raises(ValueError):
        baseline_log_loss(1.5)
    with pytest.raises(ValueError):
        baseline_log_loss(float("nan"))


def test_categorical_entropy() -> None:
    assert categorical_entropy(np.array([0.5, 0.5])) == pytest.approx(math.log(2), rel=1e-15)
    assert categorical_entropy(np.array([0.1, 0.9])) == pytest.approx(baseline_log_loss(0.1))
    assert categorical_entropy(np.array([0.25] * 4)) == pytest.approx(math.log(4), rel=1e-15)
    assert categorical_entropy(np.array([0.0, 1.0, 0.0])) == 0.0
    assert categorical_entropy(np.array([1.0])) == 0.0


def test_binary_entropy_zero_log_zero() -> None:
    h = binary_entropy(np.array([0.0, 1.0, 0.5, 0.1]))
    assert h[0] == 0.0 and h[1] == 0.0
    assert h[2] == pytest.approx(math.log(2), rel=1e-15)
    assert h[3] == pytest.approx(baseline_log_loss(0.1), rel=1e-15)


def test_logistic_regression_toy_example_004() -> None:
    model = LogisticRegression(solver="lbfgs", C=1.0).fit(LR_X.reshape(-1, 1), LR_Y)
    p = model.predict_proba(LR_X.reshape(-1, 1))[:, 1]
    stats = binary_window_stats(p, LR_Y.astype(np.float64), ONES)
    assert stats.log_loss is not None
    assert round(stats.log_loss, 4) == 0.3329
    assert stats.log_loss == pytest.approx(sk_log_loss(LR_Y, p), rel=1e-12)


def test_stderr_unit_weights_is_s_over_sqrt_n() -> None:
    losses = binary_losses(TABLE1_SCORES, BALANCED_LABELS)
    mean = float(losses.mean())
    expected = float(np.std(losses, ddof=1)) / math.sqrt(losses.size)
    assert weighted_stderr(losses, ONES, mean) == pytest.approx(expected, rel=1e-12)
    assert weighted_stderr(losses[:1], ONES[:1], mean) is None


def test_weighted_quantile_small_cases() -> None:
    values = np.array([3.0, 1.0, 2.0, 10.0])
    assert weighted_quantile(values, np.ones(4), 0.5) == 2.0
    assert weighted_quantile(values, np.ones(4), 0.0) == 1.0
    assert weighted_quantile(values, np.ones(4), 1.0) == 10.0
    # The heavy row pulls the median onto itself.
    assert weighted_quantile(values, np.array([1.0, 1.0, 1.0, 5.0]), 0.5) == 10.0
    # Five rows of weight 0.1 reach half of the (rounded) total exactly at the 5th row.
    tenth = np.full(10, 0.1)
    assert weighted_quantile(np.arange(10.0), tenth, 0.5) == 4.0
    with pytest.raises(ValueError):
        weighted_quantile(np.array([]), np.array([]), 0.5)
    with pytest.raises(ValueError):
        weighted_quantile(values, np.ones(4), 1.5)


def test_window_with_unlabeled_rows_and_empty_window() -> None:
    scores = np.array([0.9, 0.2, 0.6, 0.5])
    labels = np.array([1.0, np.nan, 0.0, np.nan])
    weights = np.array([2.0, 99.0, 1.0, np.nan])  # unlabeled weights are ignored
    stats = binary_window_stats(scores, labels, weights)
    assert (stats.predictions, stats.labeled) == (4, 2)
    assert stats.label_coverage == 0.5
    assert stats.weight_sum == 3.0
    assert stats.positive_rate == pytest.approx(2 / 3)
    expected_ll = (2 * -math.log(0.9) + -math.log(0.4)) / 3
    assert stats.log_loss == pytest.approx(expected_ll, rel=1e-12)
    assert stats.accuracy == pytest.approx(2 / 3)
    # Expected log loss averages over all four predictions, labeled or not.
    assert stats.expected_log_loss == pytest.approx(float(binary_entropy(scores).mean()))

    unlabeled = binary_window_stats(scores, np.full(4, np.nan), np.ones(4))
    assert (unlabeled.predictions, unlabeled.labeled, unlabeled.label_coverage) == (4, 0, 0.0)
    assert unlabeled.log_loss is None and unlabeled.skill is None
    assert unlabeled.log_loss_median is None and unlabeled.accuracy is None
    assert unlabeled.expected_log_loss is not None
    assert unlabeled.weight_sum == 0.0

    empty = binary_window_stats(np.array([]), np.array([]), np.array([]))
    assert empty.predictions == 0 and empty.labeled == 0
    assert empty.label_coverage is None and empty.expected_log_loss is None
    assert empty.log_loss is None and empty.weight_sum == 0.0


def test_window_floats_are_plain_python_floats() -> None:
    stats = _window(TABLE4_SCORES, IMBALANCED_LABELS)
    multiclass_only = ("class_rates", "class_log_loss")
    for name in WindowStats.__slots__:
        value = getattr(stats, name)
        assert (value is None) == (name in multiclass_only), name
    assert_plain_types(stats)


def test_table4_calibration() -> None:
    stats = _window(TABLE4_SCORES, IMBALANCED_LABELS)
    assert stats.reliability is not None
    # Bin 1 holds 0.10 x3, 0.12, 0.15 x2 (sum 0.72), bin 2 holds 0.20 x2, 0.22 (sum 0.62):
    # nobody there clicked. Bin 8 holds the one click, predicted at 0.80. So
    # ECE = (6/10 * 0.72/6) + (3/10 * 0.62/3) + (1/10 * 0.2) = (0.72 + 0.62 + 0.2) / 10.
    assert [b.count for b in stats.reliability] == [0, 6, 3, 0, 0, 0, 0, 0, 1, 0]
    assert [b.observed_rate for b in stats.reliability if b.count] == [0.0, 0.0, 1.0]
    assert stats.ece == pytest.approx(0.154, rel=1e-12)
    assert stats.log_loss is not None and stats.expected_log_loss is not None
    assert stats.calibration_gap == stats.log_loss - stats.expected_log_loss


def test_invalid_inputs_rejected() -> None:
    with pytest.raises(ValueError):
        binary_window_stats(np.array([1.2]), np.array([1.0]), np.ones(1))
    with pytest.raises(ValueError):
        binary_window_stats(np.array([0.2]), np.array([2.0]), np.ones(1))
    with pytest.raises(ValueError):
        binary_window_stats(np.array([0.2]), np.array([1.0]), np.array([-1.0]))
    with pytest.raises(ValueError):
        binary_window_stats(np.array([0.2, 0.3]), np.array([1.0]), np.ones(1))
    with pytest.raises(ValueError):
        stats_by_group(np.array([0.5]), np.array([0.2]), np.array([1.0]), np.ones(1))


def test_stats_by_group_tables() -> None:
    keys = np.repeat(np.array([7200, 3600], dtype=np.int64), 10)
    scores = np.concatenate([TABLE4_SCORES, TABLE1_SCORES])
    labels = np.concatenate([IMBALANCED_LABELS, BALANCED_LABELS])
    groups = stats_by_group(keys, scores, labels, np.ones(20))
    assert list(groups) == [3600, 7200]
    assert groups[3600] == _window(TABLE1_SCORES, BALANCED_LABELS)
    assert groups[7200] == _window(TABLE4_SCORES, IMBALANCED_LABELS)
    empty = np.array([], dtype=np.float64)
    assert stats_by_group(np.array([], dtype=np.int64), empty, empty, empty) == {}
