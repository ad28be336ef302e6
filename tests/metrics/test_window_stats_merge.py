"""Property tests: window statistics merge.

finalise(merge of the parts) must equal finalise(whole) to 1e-12 on every sum-based
field, and the quantiles (exact loss values travel with the parts) must be identical,
whatever the split and the order of the merges. The whole itself is checked against
the independent references by test_window_properties / test_multiclass_properties.
"""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from app.metrics import WindowStats, binary_window_stats, multiclass_window_stats
from app.metrics.row_sums import binary_sums_by_group, multiclass_sums_by_group
from app.metrics.window_stats import (
    QUANTILE_FIELDS,
    WindowSums,
    empty,
    finalise,
    merge,
    with_quantiles,
)
from tests.metrics.reference import assert_plain_types
from tests.metrics.test_multiclass_properties import McWindow, mc_windows
from tests.metrics.test_window_properties import Window, windows

BOUNDED = settings(max_examples=200, deadline=None)
TOL = 1e-12

SUM_FIELDS = (
    "weight_sum",
    "label_coverage",
    "positive_rate",
    "log_loss",
    "baseline_log_loss",
    "skill",
    "log_loss_stderr",
    "expected_log_loss",
    "accuracy",
    "ece",
    "calibration_gap",
)


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=TOL, abs_tol=TOL)


def assert_same(got: WindowStats, whole: WindowStats) -> None:
    assert got.predictions == whole.predictions and got.labeled == whole.labeled
    for name in SUM_FIELDS:
        assert _close(getattr(got, name), getattr(whole, name)), name
    # Exact quantiles: the same loss values, so the same row is picked.
    for name in QUANTILE_FIELDS:
        assert getattr(got, name) == getattr(whole, name), name
    for name in ("class_rates", "class_log_loss"):
        a, b = getattr(got, name), getattr(whole, name)
        assert (a is None) == (b is None), name
        if a is not None and b is not None:
            assert all(_close(x, y) for x, y in zip(a, b, strict=True)), name
    assert (got.reliability is None) == (whole.reliability is None)
    if got.reliability is not None and whole.reliability is not None:
        for x, y in zip(got.reliability, whole.reliability, strict=True):
            assert x.count == y.count
            assert _close(x.weight, y.weight)
            assert _close(x.mean_predicted, y.mean_predicted)
            assert _close(x.observed_rate, y.observed_rate)


def merge_in_order(parts: list[WindowSums], shape: list[int]) -> WindowSums:
    """Merge with an association drawn by hypothesis (a random binary tree)."""
    items = list(parts)
    for pick in shape:
        if len(items) == 1:
            break
        i = pick % (len(items) - 1)
        items[i : i + 2] = [merge(items[i], items[i + 1])]
    while len(items) > 1:
        items[0:2] = [merge(items[0], items[1])]
    return items[0]


@BOUNDED
@given(windows(min_size=1), st.data())
def test_binary_merge_of_parts_is_the_whole(win: Window, data: st.DataObject) -> None:
    n = win.scores.size
    part_of = np.array(data.draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)))
    parts = binary_sums_by_group(part_of, win.scores, win.labels, win.weights, win.eps)
    listed = [parts[k] for k in data.draw(st.permutations(sorted(parts)))]
    # The empty statistics are the identity, wherever they enter.
    listed.insert(data.draw(st.integers(0, len(listed))), empty("binary"))
    shape = data.draw(st.lists(st.integers(0, 10), max_size=8))
    merged = finalise(merge_in_order(listed, shape))
    whole = binary_window_stats(win.scores, win.labels, win.weights, win.eps)
    assert_plain_types(merged)
    assert_same(merged, whole)


@BOUNDED
@given(mc_windows(), st.data())
def test_multiclass_merge_of_parts_is_the_whole(win: McWindow, data: st.DataObject) -> None:
    n, k = win.probabilities.shape
    if n == 0:
        return
    part_of = np.array(data.draw(st.lists(st.integers(0, 3), min_size=n, max_size=n)))
    parts = multiclass_sums_by_group(part_of, win.probabilities, win.labels, win.weights, win.eps)
    listed = [parts[key] for key in data.draw(st.permutations(sorted(parts)))]
    listed.append(empty("multiclass", n_classes=k))
    shape = data.draw(st.lists(st.integers(0, 10), max_size=8))
    merged = finalise(merge_in_order(listed, shape))
    whole = multiclass_window_stats(win.probabilities, win.labels, win.weights, win.eps)
    assert_plain_types(merged)
    assert_same(merged, whole)


@BOUNDED
@given(windows(min_size=1))
def test_record_round_trips_through_json(win: Window) -> None:
    keys = np.zeros(win.scores.size, dtype=np.int64)
    sums = binary_sums_by_group(keys, win.scores, win.labels, win.weights, win.eps)[0]
    text = json.dumps(sums.to_dict(), allow_nan=False)
    again = WindowSums.from_dict(json.loads(text))
    assert finalise(again) == finalise(sums)


@BOUNDED
@given(windows(min_size=1))
def test_raw_sums_with_producer_quantiles(win: Window) -> None:
    """A producer that writes raw sums (loss_shift 0) and computes its own quantiles
    (e.g. Spark) finalises to the same window."""
    keys = np.zeros(win.scores.size, dtype=np.int64)
    sums = binary_sums_by_group(keys, win.scores, win.labels, win.weights, win.eps)[0]
    whole = finalise(sums)
    raw = merge(empty("binary"), sums)  # re-centred on the mean: now shift back to 0
    d = raw.loss_shift
    raw_d = raw.to_dict()
    raw_d["loss_shift"] = 0.0
    raw_d["loss_w2_sum"] = raw.loss_w2_sum + d * raw.weight_sq_sum
    raw_d["loss_sq_w2_sum"] = (
        raw.loss_sq_w2_sum + 2 * d * raw.loss_w2_sum + d * d * raw.weight_sq_sum
    )
    quantiles = {name: getattr(whole, name) for name in QUANTILE_FIELDS}
    if whole.log_loss is None:
        return
    produced = with_quantiles(WindowSums.from_dict(raw_d), quantiles)
    got = finalise(produced)
    for name in QUANTILE_FIELDS:
        assert getattr(got, name) == getattr(whole, name), name
    assert _close(got.log_loss, whole.log_loss)
    # Raw (uncentred) sums lose digits to cancellation: that is why the numpy path
    # centres; still well inside the API's 1e-9 whenever the spread is not tiny.
    if whole.log_loss_stderr is not None and whole.log_loss_stderr > 1e-6 * whole.log_loss:
        assert got.log_loss_stderr is not None
        assert math.isclose(got.log_loss_stderr, whole.log_loss_stderr, rel_tol=1e-6)


def test_producer_quantiles_do_not_survive_a_merge_of_two_labeled_parts() -> None:
    keys = np.array([0, 1])
    parts = binary_sums_by_group(keys, [0.2, 0.7], [0.0, 1.0], [1.0, 1.0])
    q = dict.fromkeys(QUANTILE_FIELDS, 0.1)
    a, b = (with_quantiles(parts[k], q) for k in (0, 1))
    merged = finalise(merge(a, b))
    assert merged.log_loss is not None
    assert all(getattr(merged, name) is None for name in QUANTILE_FIELDS)
    # ...but an empty side is the identity.
    assert finalise(merge(a, empty("binary"))).log_loss_median == 0.1


def test_merge_refuses_different_tasks() -> None:
    try:
        merge(empty("binary"), empty("multiclass", n_classes=3))
    except ValueError:
        return
    raise AssertionError("merged a binary and a 3-class record")


def test_from_dict_refuses_unknown_fields() -> None:
    d = empty("binary").to_dict()
    d["loss_squared"] = 1.0
    try:
        WindowSums.from_dict(d)
    except ValueError as e:
        assert "loss_squared" in str(e)
        return
    raise AssertionError("accepted an unknown field")
