"""Property tests: multiclass windows against an independent reference, sklearn and the
binary code (K = 2)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import log_loss as sk_log_loss

from app.metrics import binary_window_stats, multiclass_stats_by_group, multiclass_window_stats
from tests.metrics.reference import (
    assert_plain_types,
    assert_table_matches,
    close,
    reference_reliability,
)
from tests.metrics.test_window_properties import quantile_band

FloatArray = npt.NDArray[np.float64]

EPS_CHOICES = (1e-15, 1e-7, 1e-3)
BOUNDED = settings(max_examples=200, deadline=None)


@dataclass(frozen=True)
class McWindow:
    probabilities: FloatArray  # (n, K)
    labels: FloatArray  # class index as float, NaN = no actual yet
    weights: FloatArray
    eps: float
    unit_weights: bool


@st.composite
def probability_rows(draw: st.DrawFn, k: int) -> list[float]:
    kind = draw(st.sampled_from(["normalised", "normalised", "one-hot", "uniform", "raw"]))
    if kind == "one-hot":  # certain predictions: clipping decides the loss
        hot = draw(st.integers(0, k - 1))
        return [1.0 if j == hot else 0.0 for j in range(k)]
    if kind == "uniform":  # argmax ties everywhere
        return [1.0 / k] * k
    if kind == "raw":  # rows need not sum to 1: nothing renormalises them
        return draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k))
    mass = draw(st.lists(st.one_of(st.just(0.0), st.floats(1e-6, 1.0)), min_size=k, max_size=k))
    total = math.fsum(mass)
    return [m / total for m in mass] if total > 0.0 else [1.0 / k] * k


@st.composite
def mc_windows(draw: st.DrawFn, max_size: int = 40) -> McWindow:
    k = draw(st.integers(2, 6))
    n = draw(st.integers(0, max_size))
    rows = [draw(probability_rows(k)) for _ in range(n)]
    # Labels drawn from a subset of the classes, so some classes have no row.
    present = draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    label_st = st.sampled_from([float(c) for c in present] + [math.nan])
    labels = draw(st.lists(label_st, min_size=n, max_size=n))
    unit = draw(st.booleans())
    # Zero weights give classes / bins with rows but no weight.
    weight_st = st.one_of(st.just(0.0), st.floats(1e-3, 1e3))
    weights = [1.0] * n if unit else draw(st.lists(weight_st, min_size=n, max_size=n))
    # The weight of an unlabeled row must not matter, so give those rows garbage.
    weights = [math.nan if math.isnan(y) else w for y, w in zip(labels, weights, strict=True)]
    return McWindow(
        probabilities=np.array(rows, dtype=np.float64).reshape(n, k),
        labels=np.array(labels, dtype=np.float64),
        weights=np.array(weights, dtype=np.float64),
        eps=draw(st.sampled_from(EPS_CHOICES)),
        unit_weights=unit,
    )


def sklearn_log_loss(y: list[int], clipped: FloatArray, k: int, w: list[float]) -> float:
    with warnings.catch_warnings():
        # Our rows are clipped and never renormalised (nor are the "raw" rows
        # distributions), so they may not sum to 1. sklearn only warns about that and
        # does not renormalise either: its number is still the one to compare with.
        warnings.filterwarnings("ignore", message="The y_prob values do not sum to one")
        return float(
            sk_log_loss(
                np.array(y), y_proba=clipped, labels=list(range(k)), sample_weight=np.array(w)
            )
        )


@BOUNDED
@given(mc_windows())
def test_multiclass_window_matches_references(win: McWindow) -> None:
    stats = multiclass_window_stats(win.probabilities, win.labels, win.weights, win.eps)
    assert_plain_types(stats)
    n_all, k = win.probabilities.shape
    assert stats.predictions == n_all and stats.positive_rate is None
    if n_all == 0:
        assert stats.label_coverage is None and stats.expected_log_loss is None
        assert stats.log_loss is None and stats.class_rates is None
        return

    clipped = np.clip(win.probabilities, win.eps, 1.0 - win.eps)
    rows = clipped.tolist()
    entropies = [-math.fsum(c * math.log(c) for c in row) for row in rows]
    assert close(stats.expected_log_loss, math.fsum(entropies) / n_all)

    idx = [i for i in range(n_all) if not math.isnan(win.labels[i])]
    n = len(idx)
    assert stats.labeled == n and stats.label_coverage == n / n_all
    y = [int(win.labels[i]) for i in idx]
    w = [float(win.weights[i]) for i in idx]
    total = math.fsum(w)
    assert close(stats.weight_sum, total)
    if n == 0 or total == 0.0:
        for name in ("log_loss", "baseline_log_loss", "skill", "log_loss_stderr", "accuracy"):
            assert getattr(stats, name) is None, name
        assert stats.class_rates is None and stats.class_log_loss is None
        assert stats.reliability is None and stats.ece is None
        assert stats.calibration_gap is None
        return

    losses = [-math.log(rows[i][c]) for i, c in zip(idx, y, strict=True)]
    ref_ll = math.fsum(wi * li for wi, li in zip(w, losses, strict=True)) / total
    assert close(stats.log_loss, ref_ll)
    assert close(stats.log_loss, sklearn_log_loss(y, clipped[idx], k, w))

    def class_sum(values: list[float], cls: int) -> float:
        return math.fsum(v for v, c in zip(values, y, strict=True) if c == cls)

    rates = [class_sum(w, cls) / total for cls in range(k)]
    assert stats.class_rates is not None and len(stats.class_rates) == k
    assert all(close(got, r) for got, r in zip(stats.class_rates, rates, strict=True))
    ref_baseline = -math.fsum(r * math.log(r) for r in rates if r > 0.0)
    assert close(stats.baseline_log_loss, ref_baseline)
    if ref_baseline == 0.0:
        assert stats.baseline_log_loss == 0.0 and stats.skill is None
    else:
        assert close(stats.skill, 1.0 - ref_ll / ref_baseline)

    if n < 2:
        assert stats.log_loss_stderr is None
    else:
        sq = math.fsum((wi * (li - ref_ll)) ** 2 for wi, li in zip(w, losses, strict=True))
        assert close(stats.log_loss_stderr, math.sqrt(n / (n - 1) * sq) / total)

    raw = win.probabilities.tolist()
    top = [raw[i].index(max(raw[i])) for i in idx]  # first maximum, as np.argmax
    correct = [1.0 if t == c else 0.0 for t, c in zip(top, y, strict=True)]
    assert close(
        stats.accuracy, math.fsum(wi * ci for wi, ci in zip(w, correct, strict=True)) / total
    )

    assert stats.class_log_loss is not None and len(stats.class_log_loss) == k
    weighted = [wi * li for wi, li in zip(w, losses, strict=True)]
    for cls, got in enumerate(stats.class_log_loss):
        class_weight = class_sum(w, cls)
        if class_weight == 0.0:
            assert got is None, cls
        else:
            assert close(got, class_sum(weighted, cls) / class_weight), cls

    confidence = [raw[i][t] for i, t in zip(idx, top, strict=True)]
    ref_table, ref_ece = reference_reliability(confidence, correct, w)
    assert stats.reliability is not None
    assert_table_matches(stats.reliability, ref_table)
    assert ref_ece is not None and close(stats.ece, ref_ece)

    assert stats.log_loss is not None and stats.expected_log_loss is not None
    assert stats.calibration_gap == stats.log_loss - stats.expected_log_loss

    loss_array = np.array(losses)
    for got, level in (
        (stats.log_loss_median, 0.5),
        (stats.log_loss_p90, 0.9),
        (stats.log_loss_p99, 0.99),
    ):
        assert got is not None
        if win.unit_weights:
            assert close(got, float(np.quantile(loss_array, level, method="inverted_cdf")))
        else:
            lo, hi = quantile_band(loss_array, np.array(w), level)
            assert lo - 1e-12 <= got <= hi + 1e-12


def tight(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


@BOUNDED
@given(st.data())
def test_two_classes_match_binary(data: st.DataObject) -> None:
    eps = data.draw(st.sampled_from(EPS_CHOICES))
    n = data.draw(st.integers(0, 60))
    # Two departures from the binary definition are inherent, so they are left out:
    # - at exactly 0.5 np.argmax picks class 0 while the binary rule (p >= 0.5) says 1;
    # - near 1 the two forms clip different numbers: the binary form clips s to the
    #   double nearest 1 - eps, whose complement is not eps (9.99e-16 for eps = 1e-15),
    #   while the two-class form clips the complement 1 - s itself to exactly eps. The
    #   margin of 2 eps keeps 1 - s above eps, where neither clip is active at the top.
    upper = 1.0 - 2.0 * eps
    score_st = st.one_of(st.sampled_from([0.0, upper, 0.25, 1e-300]), st.floats(0.0, upper)).filter(
        lambda s: s != 0.5
    )
    s = np.array(data.draw(st.lists(score_st, min_size=n, max_size=n)), dtype=np.float64)
    y = np.array(
        data.draw(st.lists(st.sampled_from([0.0, 1.0, math.nan]), min_size=n, max_size=n)),
        dtype=np.float64,
    )
    weight_st = st.one_of(st.just(1.0), st.floats(1e-3, 1e3))
    w = np.array(data.draw(st.lists(weight_st, min_size=n, max_size=n)), dtype=np.float64)

    binary = binary_window_stats(s, y, w, eps)
    multi = multiclass_window_stats(np.column_stack([1.0 - s, s]), y, w, eps)
    assert (multi.predictions, multi.labeled) == (binary.predictions, binary.labeled)
    assert multi.label_coverage == binary.label_coverage
    assert multi.weight_sum == binary.weight_sum
    assert multi.accuracy == binary.accuracy
    for name in (
        "log_loss",
        "baseline_log_loss",
        "log_loss_stderr",
        "log_loss_median",
        "log_loss_p90",
        "log_loss_p99",
        "expected_log_loss",
    ):
        assert tight(getattr(multi, name), getattr(binary, name)), name
    if binary.positive_rate is not None:
        assert multi.class_rates is not None
        # The same weights summed the same way: the positive rate, bit for bit.
        assert multi.class_rates[1] == binary.positive_rate
        assert (multi.skill is None) == (binary.skill is None)


KEY_POOL = [-3600, 0, 3600, 1_790_000_000, 1_790_003_600]


@BOUNDED
@given(mc_windows(), st.data())
def test_multiclass_stats_by_group_equals_per_group_calls(
    win: McWindow, data: st.DataObject
) -> None:
    n = win.labels.size
    keys = np.array(
        data.draw(st.lists(st.sampled_from(KEY_POOL), min_size=n, max_size=n)), dtype=np.int64
    )
    groups = multiclass_stats_by_group(keys, win.probabilities, win.labels, win.weights, win.eps)
    assert sorted(groups) == sorted(set(keys.tolist()))
    for key, got in groups.items():
        rows = keys == key
        direct = multiclass_window_stats(
            win.probabilities[rows], win.labels[rows], win.weights[rows], win.eps
        )
        assert got == direct
