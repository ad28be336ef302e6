"""Mergeable window statistics: the one definition of a window's metrics.

Every compute path (the numpy pass over the database, the Spark job over lake logs)
produces, per window and per slice, one `WindowSums` record: counts and weighted sums
from which every published field of the metric history is *finalised* here and only
here. Two records of disjoint row sets of the same window merge into the record of
their union (`merge`, associative and commutative up to float rounding), so a window
can be computed in parts (partitions, late labels) and finalised once.

The record is plain data: ints, floats, tuples of floats and, for the exact quantiles,
two equally long 1-D float sequences (lists or numpy arrays). `to_dict` / `from_dict`
give a JSON-able dict with lists, for a producer in another process or language.

Field meanings (rows i of the window; "labeled" rows are those with an actual; w_i the
sample weight, y_i the label, p_i = min(max(p, eps), 1 − eps) the clipped probability,
ℓ_i the per-row log loss of API.md "Metric history"):

=========================  ==========================================================
task                       "binary" or "multiclass"
predictions                number of ALL predictions in the window (labeled or not)
entropy_sum                Σ over ALL predictions (unweighted) of the entropy of the
                           clipped probabilities (binary: −[p ln p + (1−p) ln(1−p)];
                           multiclass: −Σ_k c_k ln c_k of the clipped row c)
labeled                    n = number of labeled rows (zero-weight rows included)
weight_sum                 Σ w_i over labeled rows
weight_sq_sum              Σ w_i²
loss_sum                   Σ w_i ℓ_i
loss_shift                 c, any constant the two sums below are centred on; 0.0 gives
                           the raw sums Σ w²ℓ and Σ w²ℓ². The numpy path uses the window's
                           own mean loss (a two-pass, cancellation-free stderr); a
                           producer may use 0.0 or any c (merge re-centres).
loss_w2_sum                Σ w_i² (ℓ_i − c)
loss_sq_w2_sum             Σ w_i² (ℓ_i − c)²
correct_weight             Σ w_i [prediction right] (binary: (p_i ≥ 0.5) = y_i on the
                           clipped p; multiclass: arg-max of the raw row = y_i)
class_weight               per class k, Σ w_i [y_i = k] (binary: (negative, positive))
class_loss_sum             per class k, Σ w_i ℓ_i [y_i = k]
bin_count                  per reliability bin b (10 equal-width bins of the RAW
                           probability: binary the score, multiclass the top-class
                           confidence; row -> bin min(floor(10 p), 9)): labeled rows
bin_weight                 per bin, Σ w_i
bin_predicted              per bin, Σ w_i p_i (raw p)
bin_outcome                per bin, Σ w_i o_i (binary o = y; multiclass o = [top right])
loss_values, loss_weights  exact quantiles: ℓ_i and w_i of every labeled row (any
                           order); merge concatenates them. None if not kept.
quantiles                  exact quantiles supplied by the producer instead, as
                           {field name: value} for every field of QUANTILE_FIELDS
                           (e.g. Spark: per window, rows ordered by ℓ, running Σ w
                           with a window function, the first ℓ whose running sum
                           reaches q·Σw). Used when loss_values is None; two records
                           with only `quantiles` merge to None (not mergeable).
=========================  ==========================================================

Why exact loss values and not a sketch: the numpy pass holds a window's rows in memory
anyway and sorting its losses is the cost it always paid (bench/compute.py), so exact
values cost nothing extra there and keep the quantiles bit-identical to
`weighted_quantiles`; a lake-scale producer computes the quantile in its own engine
(Spark: a histogram with a stated bound, app/spark/aggregate.py) and passes `quantiles`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from app.metrics.baseline import baseline_log_loss, categorical_entropy
from app.metrics.calibration import DEFAULT_BINS, ReliabilityBin
from app.metrics.published import QUANTILE_FIELDS, WindowStats, unscored
from app.metrics.stats import weighted_quantiles

BINARY = "binary"
MULTICLASS = "multiclass"

_LEVELS = np.array(list(QUANTILE_FIELDS.values()), dtype=np.float64)

FloatSeq = Sequence[float] | npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class WindowSums:
    """Sufficient statistics of one window (or slice); see the module docstring."""

    task: str
    predictions: int
    entropy_sum: float
    labeled: int
    weight_sum: float
    weight_sq_sum: float
    loss_sum: float
    loss_shift: float
    loss_w2_sum: float
    loss_sq_w2_sum: float
    correct_weight: float
    class_weight: tuple[float, ...]
    class_loss_sum: tuple[float, ...]
    bin_count: tuple[int, ...]
    bin_weight: tuple[float, ...]
    bin_predicted: tuple[float, ...]
    bin_outcome: tuple[float, ...]
    loss_values: FloatSeq | None = None
    loss_weights: FloatSeq | None = None
    quantiles: Mapping[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: sequences as lists."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WindowSums:
        """The record from a dict (e.g. to_dict's, or a producer's JSON); unknown keys
        are an error so a misspelt field cannot silently read as missing."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown window statistics fields: {sorted(unknown)}")
        kw: dict[str, Any] = dict(data)
        for name in ("class_weight", "class_loss_sum", "bin_weight", "bin_predicted"):
            kw[name] = tuple(float(x) for x in kw[name])
        kw["bin_outcome"] = tuple(float(x) for x in kw["bin_outcome"])
        kw["bin_count"] = tuple(int(x) for x in kw["bin_count"])
        for name in ("loss_values", "loss_weights"):
            if kw.get(name) is not None:
                kw[name] = [float(x) for x in kw[name]]
        if kw.get("quantiles") is not None:
            kw["quantiles"] = {str(k): float(v) for k, v in kw["quantiles"].items()}
        return cls(**kw)


def empty(task: str, n_classes: int = 2, bins: int = DEFAULT_BINS) -> WindowSums:
    """The statistics of no rows: the identity of `merge`."""
    zeros = (0.0,) * n_classes
    return WindowSums(
        task=task,
        predictions=0,
        entropy_sum=0.0,
        labeled=0,
        weight_sum=0.0,
        weight_sq_sum=0.0,
        loss_sum=0.0,
        loss_shift=0.0,
        loss_w2_sum=0.0,
        loss_sq_w2_sum=0.0,
        correct_weight=0.0,
        class_weight=zeros,
        class_loss_sum=zeros,
        bin_count=(0,) * bins,
        bin_weight=(0.0,) * bins,
        bin_predicted=(0.0,) * bins,
        bin_outcome=(0.0,) * bins,
        loss_values=[],
        loss_weights=[],
    )


def _add(a: Sequence[float], b: Sequence[float]) -> tuple[float, ...]:
    return tuple(x + y for x, y in zip(a, b, strict=True))


def _recentred(s: WindowSums, shift: float) -> tuple[float, float]:
    """(Σw²(ℓ−shift), Σw²(ℓ−shift)²) from the sums centred on s.loss_shift."""
    d = s.loss_shift - shift
    return (
        s.loss_w2_sum + d * s.weight_sq_sum,
        s.loss_sq_w2_sum + 2.0 * d * s.loss_w2_sum + d * d * s.weight_sq_sum,
    )


def _concat(a: FloatSeq | None, b: FloatSeq | None) -> FloatSeq | None:
    if a is None or b is None:
        return None
    return np.concatenate((np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)))


def merge(a: WindowSums, b: WindowSums) -> WindowSums:
    """The statistics of the union of two disjoint row sets of one window."""
    if a.task != b.task or len(a.class_weight) != len(b.class_weight):
        raise ValueError("cannot merge statistics of different tasks or class counts")
    if len(a.bin_count) != len(b.bin_count):
        raise ValueError("cannot merge statistics with different reliability bins")
    weight_sum = a.weight_sum + b.weight_sum
    loss_sum = a.loss_sum + b.loss_sum
    # Centre the merged sums on the merged mean: the same cancellation-free form a
    # single-pass producer writes (Chan et al.'s pairwise update, weighted).
    shift = loss_sum / weight_sum if weight_sum > 0.0 else 0.0
    a1, a2 = _recentred(a, shift)
    b1, b2 = _recentred(b, shift)
    keep_values = a.loss_values is not None and b.loss_values is not None
    return WindowSums(
        task=a.task,
        predictions=a.predictions + b.predictions,
        entropy_sum=a.entropy_sum + b.entropy_sum,
        labeled=a.labeled + b.labeled,
        weight_sum=weight_sum,
        weight_sq_sum=a.weight_sq_sum + b.weight_sq_sum,
        loss_sum=loss_sum,
        loss_shift=shift,
        loss_w2_sum=a1 + b1,
        loss_sq_w2_sum=a2 + b2,
        correct_weight=a.correct_weight + b.correct_weight,
        class_weight=_add(a.class_weight, b.class_weight),
        class_loss_sum=_add(a.class_loss_sum, b.class_loss_sum),
        bin_count=tuple(x + y for x, y in zip(a.bin_count, b.bin_count, strict=True)),
        bin_weight=_add(a.bin_weight, b.bin_weight),
        bin_predicted=_add(a.bin_predicted, b.bin_predicted),
        bin_outcome=_add(a.bin_outcome, b.bin_outcome),
        loss_values=_concat(a.loss_values, b.loss_values) if keep_values else None,
        loss_weights=_concat(a.loss_weights, b.loss_weights) if keep_values else None,
        # Exact quantiles of parts do not combine into the quantile of the whole; an
        # empty side is the identity and keeps the other's.
        quantiles=b.quantiles if a.labeled == 0 else a.quantiles if b.labeled == 0 else None,
    )


def merge_all(parts: Sequence[WindowSums]) -> WindowSums:
    if not parts:
        raise ValueError("merge_all needs at least one part")
    out = parts[0]
    for p in parts[1:]:
        out = merge(out, p)
    return out


def _reliability(s: WindowSums) -> tuple[tuple[ReliabilityBin, ...], float | None]:
    nbins = len(s.bin_count)
    table = []
    gap_sum = 0.0
    for k in range(nbins):
        weight = s.bin_weight[k]
        mean_p = rate = None
        if weight > 0.0:
            mean_p = s.bin_predicted[k] / weight
            rate = s.bin_outcome[k] / weight
            gap_sum += weight * abs(mean_p - rate)
        table.append(
            ReliabilityBin(
                lower=k / nbins,
                upper=(k + 1) / nbins,
                count=s.bin_count[k],
                weight=weight,
                mean_predicted=mean_p,
                observed_rate=rate,
            )
        )
    return tuple(table), gap_sum / s.weight_sum


def _quantiles(s: WindowSums) -> dict[str, float | None]:
    if s.loss_values is not None and s.loss_weights is not None:
        values = weighted_quantiles(s.loss_values, s.loss_weights, _LEVELS).tolist()
        return dict(zip(QUANTILE_FIELDS, values, strict=True))
    if s.quantiles is not None:
        return {name: float(s.quantiles[name]) for name in QUANTILE_FIELDS}
    return dict.fromkeys(QUANTILE_FIELDS)


def _rate(part: float, total: float) -> float:
    # Clamp: the last-ulp overshoot a different summation order could produce.
    return min(max(part / total, 0.0), 1.0)


def finalise(s: WindowSums) -> WindowStats:
    """The published fields of a window from its statistics (API.md "Metric history")."""
    if s.predictions == 0:
        return unscored(0, 0, 0.0, None)
    expected = s.entropy_sum / s.predictions
    if s.labeled == 0 or s.weight_sum == 0.0:
        return unscored(s.predictions, s.labeled, s.weight_sum, expected)

    total = s.weight_sum
    log_loss = s.loss_sum / total
    # Each class's weight was summed over the same rows, in the same order, as the
    # total when every label is that class: the rate is then exactly 1.0 and the
    # baseline an exact 0 (skill None).
    rates = tuple(_rate(cw, total) for cw in s.class_weight)
    multiclass = s.task == MULTICLASS
    if multiclass:
        baseline = categorical_entropy(np.array(rates, dtype=np.float64))
        positive_rate = None
    else:
        positive_rate = rates[1]
        baseline = baseline_log_loss(positive_rate)
    skill = None if baseline == 0.0 else 1.0 - log_loss / baseline

    stderr = None
    n = s.labeled
    if n >= 2:
        # Σ w²(ℓ−L)² = S2 − 2 d S1 + d² S0 with d = L − c; d is exactly 0 for a window
        # the numpy pass computed whole (it centres on L itself).
        d = log_loss - s.loss_shift
        spread = s.loss_sq_w2_sum - 2.0 * d * s.loss_w2_sum + d * d * s.weight_sq_sum
        stderr = math.sqrt(n / (n - 1) * max(spread, 0.0)) / total

    q = _quantiles(s)
    reliability, ece = _reliability(s)
    return WindowStats(
        predictions=s.predictions,
        labeled=n,
        label_coverage=n / s.predictions,
        weight_sum=total,
        positive_rate=positive_rate,
        log_loss=log_loss,
        baseline_log_loss=baseline,
        skill=skill,
        log_loss_stderr=stderr,
        **q,  # one keyword per QUANTILE_FIELDS entry
        expected_log_loss=expected,
        accuracy=s.correct_weight / total,
        class_rates=rates if multiclass else None,
        class_log_loss=(
            tuple(
                ls / cw if cw > 0.0 else None
                for ls, cw in zip(s.class_loss_sum, s.class_weight, strict=True)
            )
            if multiclass
            else None
        ),
        reliability=reliability,
        ece=ece,
        calibration_gap=log_loss - expected,
    )


def with_quantiles(s: WindowSums, quantiles: Mapping[str, float]) -> WindowSums:
    """`s` carrying producer-computed exact quantiles instead of the loss values."""
    missing = set(QUANTILE_FIELDS) - set(quantiles)
    if missing:
        raise ValueError(f"quantiles missing {sorted(missing)}")
    return replace(s, loss_values=None, loss_weights=None, quantiles=dict(quantiles))
