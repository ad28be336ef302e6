"""Property tests: the vectorised metrics against straightforward independent references."""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss as sk_log_loss

from app.metrics import (
    binary_window_stats,
    stats_by_group,
    weighted_quantile,
    weighted_quantiles,
)
from tests.metrics.reference import assert_table_matches, reference_reliability

FloatArray = npt.NDArray[np.float64]

EPS_CHOICES = (1e-15, 1e-7, 1e-3)
BOUNDED = settings(max_examples=200, deadline=None)


def close(a: float | None, b: float) -> bool:
    return a is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


@dataclass(frozen=True)
class Window:
    scores: FloatArray
    labels: FloatArray
    weights: FloatArray
    eps: float
    unit_weights: bool


scores_st = st.one_of(
    st.sampled_from([0.0, 1.0, 0.5]),
    st.floats(min_value=0.0, max_value=1.0, allow_subnormal=True),
)
labels_st = st.sampled_from([0.0, 1.0, 0.0, 1.0, math.nan])
weights_st = st.floats(min_value=1e-3, max_value=1e3)


@st.composite
def windows(draw: st.DrawFn, min_size: int = 0, max_size: int = 60) -> Window:
    n = draw(st.integers(min_value=min_size, max_value=max_size))
    scores = draw(st.lists(scores_st, min_size=n, max_size=n))
    labels = draw(st.lists(labels_st, min_size=n, max_size=n))
    unit = draw(st.booleans())
    weights = [1.0] * n if unit else draw(st.lists(weights_st, min_size=n, max_size=n))
    # The weight of an unlabeled row must not matter, so give those rows garbage.
    weights = [math.nan if math.isnan(y) else w for y, w in zip(labels, weights, strict=True)]
    return Window(
        scores=np.array(scores, dtype=np.float64),
        labels=np.array(labels, dtype=np.float64),
        weights=np.array(weights, dtype=np.float64),
        eps=draw(st.sampled_from(EPS_CHOICES)),
        unit_weights=unit,
    )


def quantile_band(values: FloatArray, weights: FloatArray, q: float) -> tuple[float, float]:
    """Exact-arithmetic bounds for the weighted quantile.

    The upper end is the exact definition; the lower end allows the cumulative weight to
    fall short of q * sum(w) by a relative 1e-9, the most float rounding could explain.
    """
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    cumulative: list[Fraction] = []
    running = Fraction(0)
    for w in weights[order]:
        running += Fraction(float(w))
        cumulative.append(running)
    target = Fraction(q) * running
    lo = next(i for i, c in enumerate(cumulative) if c >= target * (1 - Fraction(1, 10**9)))
    hi = next(i for i, c in enumerate(cumulative) if c >= target)
    return float(sorted_values[lo]), float(sorted_values[hi])


@BOUNDED
@given(windows())
def test_window_matches_references(win: Window) -> None:
    stats = binary_window_stats(win.scores, win.labels, win.weights, win.eps)
    n_all = win.scores.size
    assert stats.predictions == n_all
    if n_all == 0:
        assert stats.label_coverage is None and stats.expected_log_loss is None
        return

    p_all = np.clip(win.scores, win.eps, 1.0 - win.eps)
    entropy = -(p_all * np.log(p_all) + (1.0 - p_all) * np.log(1.0 - p_all))
    assert close(stats.expected_log_loss, float(np.mean(entropy)))

    labeled = ~np.isnan(win.labels)
    n = int(labeled.sum())
    assert stats.labeled == n
    assert stats.label_coverage == n / n_all
    if n == 0:
        assert stats.log_loss is None and stats.positive_rate is None
        assert stats.log_loss_stderr is None and stats.accuracy is None
        assert stats.reliability is None and stats.ece is None
        assert stats.calibration_gap is None
        return

    y = win.labels[labeled]
    w = win.weights[labeled]
    p = p_all[labeled]
    losses = -(y * np.log(p) + (1.0 - y) * np.log(1.0 - p))
    total = math.fsum(w)
    ref_ll = math.fsum(w * losses) / total
    assert close(stats.weight_sum, total)
    assert close(stats.log_loss, ref_ll)
    # sklearn re-clips at machine eps, which leaves our (coarser) pre-clipped p alone.
    sk = sk_log_loss(y.astype(int), p, sample_weight=w, labels=[0, 1])
    assert close(stats.log_loss, float(sk))

    q = math.fsum(w * y) / total
    assert close(stats.positive_rate, q)
    ref_baseline = 0.0 if q in (0.0, 1.0) else -(q * math.log(q) + (1 - q) * math.log(1 - q))
    assert close(stats.baseline_log_loss, ref_baseline)
    if ref_baseline == 0.0:
        assert stats.baseline_log_loss == 0.0 and stats.skill is None
    else:
        assert close(stats.skill, 1.0 - ref_ll / ref_baseline)

    if n < 2:
        assert stats.log_loss_stderr is None
    else:
        ref_se = math.sqrt(n / (n - 1) * math.fsum(w**2 * (losses - ref_ll) ** 2)) / total
        assert close(stats.log_loss_stderr, ref_se)

    correct = (p >= 0.5) == (y == 1.0)
    assert close(stats.accuracy, math.fsum(w * correct) / total)

    # Calibration is judged on the raw score, not the clipped one.
    ref_table, ref_ece = reference_reliability(win.scores[labeled].tolist(), y.tolist(), w.tolist())
    assert stats.reliability is not None
    assert_table_matches(stats.reliability, ref_table)
    assert ref_ece is not None and close(stats.ece, ref_ece)
    assert stats.expected_log_loss is not None and stats.log_loss is not None
    assert stats.calibration_gap == stats.log_loss - stats.expected_log_loss
    assert stats.class_rates is None and stats.class_log_loss is None

    for got, level in (
        (stats.log_loss_median, 0.5),
        (stats.log_loss_p90, 0.9),
        (stats.log_loss_p99, 0.99),
    ):
        assert got is not None
        if win.unit_weights:
            assert close(got, float(np.quantile(losses, level, method="inverted_cdf")))
        else:
            lo, hi = quantile_band(losses, w, level)
            # Our losses and the reference's may differ in the last ulp, hence the slack.
            assert lo - 1e-12 <= got <= hi + 1e-12


@BOUNDED
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=400),
    st.one_of(st.sampled_from([0.0, 0.5, 0.9, 1.0]), st.floats(0.0, 1.0)),
)
def test_unit_weight_quantile_is_numpy_inverted_cdf(values: list[float], q: float) -> None:
    v = np.array(values)
    expected = float(np.quantile(v, q, method="inverted_cdf"))
    assert weighted_quantile(v, np.ones_like(v), q) == expected


def test_unit_weight_quantile_many_n() -> None:
    # q * n lands on (or a rounding error away from) an integer for many n: the exact
    # boundary cases where a tolerance-based comparison would drift from numpy.
    rng = np.random.default_rng(0)
    levels = np.array([0.5, 0.9, 0.1, 0.25, 0.75, 0.95, 0.99, 0.3, 0.7])
    for n in range(1, 1200):
        v = rng.permutation(n).astype(np.float64) + rng.random(n)
        got = weighted_quantiles(v, np.ones(n), levels)
        expected = np.quantile(v, levels, method="inverted_cdf")
        assert got.tolist() == expected.tolist(), n


def test_unit_weight_quantile_just_above_a_row_boundary() -> None:
    # q one ulp above k/n makes numpy's n * q land a hair above k, so numpy steps to the
    # next row; a relative tolerance on the comparison would wrongly stay on row k.
    checked = 0
    for n in range(2, 300):
        v = np.arange(n, dtype=np.float64)
        for k in range(1, n):
            q = float(np.nextafter(k / n, 1.0))
            if n * q <= k:
                continue
            checked += 1
            expected = float(np.quantile(v, q, method="inverted_cdf"))
            assert expected == k
            assert weighted_quantile(v, np.ones(n), q) == expected
    assert checked > 1000


@BOUNDED
@given(
    st.integers(min_value=1, max_value=500),
    st.sampled_from([0.1, 0.3, 0.7, 1e-3, 0.01, 1 / 3, 2.5, 123.456]),
    st.sampled_from([0.5, 0.9, 0.1, 0.25, 0.75]),
)
def test_equal_fractional_weights_match_unit_weights(n: int, weight: float, q: float) -> None:
    # Equal weights are unit weights rescaled; cumsum rounding (0.1 + 0.1 + ...) must not
    # push the answer onto the next row.
    v = np.random.default_rng(n).permutation(n).astype(np.float64)
    expected = float(np.quantile(v, q, method="inverted_cdf"))
    assert weighted_quantile(v, np.full(n, weight), q) == expected


@BOUNDED
@given(
    st.lists(st.tuples(st.floats(-100, 100), weights_st), min_size=1, max_size=80),
    st.floats(0.0, 1.0),
)
def test_weighted_quantile_within_exact_band(pairs: list[tuple[float, float]], q: float) -> None:
    v = np.array([a for a, _ in pairs])
    w = np.array([b for _, b in pairs])
    lo, hi = quantile_band(v, w, q)
    assert lo <= weighted_quantile(v, w, q) <= hi


KEY_POOL = [-3600, 0, 3600, 1_790_000_000, 1_790_003_600]


@BOUNDED
@given(windows(), st.data())
def test_stats_by_group_equals_per_group_calls(win: Window, data: st.DataObject) -> None:
    n = win.scores.size
    keys = np.array(
        data.draw(st.lists(st.sampled_from(KEY_POOL), min_size=n, max_size=n)), dtype=np.int64
    )
    groups = stats_by_group(keys, win.scores, win.labels, win.weights, win.eps)
    assert sorted(groups) == sorted(set(keys.tolist()))
    for key, got in groups.items():
        rows = keys == key
        direct = binary_window_stats(win.scores[rows], win.labels[rows], win.weights[rows], win.eps)
        assert got == direct
