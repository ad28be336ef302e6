"""Dedup, join and aggregate in Spark: from canonical prediction and label rows to one
row of sums per (window, slice). Spark SQL expressions only (no Python UDF), and the
driver receives nothing but the aggregated rows.

Rules (API.md "Lake-scale computation on Apache Spark"):
- the first prediction of an id wins: earliest timestamp, then lowest input order
  (file path, position in the file);
- the last actual wins: latest timestamp, an actual without a timestamp loses to one
  with, then the highest input order (as a re-sent actual replaces the stored one);
- both dedups are hash aggregations on `prediction_id` (a min/max over a struct whose
  leading fields are the ordering), so the join that follows finds both sides already
  hash-partitioned by the id and shuffles nothing more.

Slices are chosen as the SQL path chooses them (app/windows/slices.py): per window and
dimension (model version, each segment key) the top N values by predictions, count
ties broken by the value's text, plus the values monitors watch; the rest of the
dimension forms one `other` slice.

Quantiles are exact: a window function sorted by loss within each group gives the
cumulative weight, and the q-quantile is the smallest loss whose cumulative weight
reaches q·Σw, with the same rounding slack the numpy path allows for fractional weights
(app/metrics/stats.py). The same window pass gives each group's mean loss, so the
spread Σ (w (ℓ − L))² is summed about the mean rather than expanded from raw moments.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from app.metrics.published import QUANTILE_FIELDS
from app.spark.read import Actuals, Predictions

WINDOW = "window"  # group kind of a whole window (slices use VERSION / SEGMENT)
BINS = 10
_EXACT_INTEGER_LIMIT = float(2**53)
_MACHINE_EPS = 2.0**-52
_LONG_MIN = -(2**63)


@dataclass(frozen=True)
class JobSpec:
    window_seconds: int
    clip_eps: float
    n_classes: int  # 0 = binary
    top_n: int
    pinned: Collection[tuple[str, str, str]] = ()  # (kind, key, value) always a slice
    start: int | None = None  # window_start bounds, epoch seconds
    end: int | None = None
    # With `start`: how far before it a duplicate prediction of an id is looked for.
    dedup_lookback_seconds: int = 86_400


def first_predictions(preds: Predictions, spec: JobSpec) -> DataFrame:
    df = preds.frame
    if spec.start is not None:
        # Earlier duplicates of an id in range must still be seen to win; the windows
        # before `start` are dropped after the dedup (scored()).
        lookback = spec.start - spec.dedup_lookback_seconds
        df = df.where(F.col("ts_us") >= F.lit(lookback * 1_000_000))
    if spec.end is not None:
        df = df.where(
            F.col("ts_us") < F.lit(_window_ceil(spec.end, spec.window_seconds) * 1_000_000)
        )
    values = [c for c in df.columns if c not in ("pid", "ts_us", "fpath", "rid")]
    best = F.min(F.struct("ts_us", "fpath", "rid", *values)).alias("m")
    return df.groupBy("pid").agg(best).select("pid", *(f"m.{c}" for c in ["ts_us", *values]))


def last_actuals(acts: DataFrame) -> DataFrame:
    order = F.struct(
        F.col("ts_us").isNotNull().alias("has_ts"),
        F.coalesce(F.col("ts_us"), F.lit(_LONG_MIN)).alias("ts"),
        "fpath",
        "rid",
        "label",
        "weight",
    )
    return acts.groupBy("pid").agg(F.max(order).alias("m")).select("pid", "m.label", "m.weight")


def _window_ceil(t: int, size: int) -> int:
    return -(-t // size) * size


def _clip(c: Column, eps: float) -> Column:
    return F.least(F.greatest(c, F.lit(eps)), F.lit(1.0 - eps))


def scored(first: DataFrame, last: DataFrame, spec: JobSpec, n_segments: int) -> DataFrame:
    """One row per prediction: its window, slice values and, when labeled, loss terms."""
    joined = first.join(last, "pid", "left")
    eps = spec.clip_eps
    y = F.col("label")
    labeled = y.isNotNull()
    ws = (
        F.floor(F.col("ts_us") / F.lit(1_000_000 * spec.window_seconds)) * spec.window_seconds
    ).cast("long")
    if spec.n_classes == 0:
        s = F.col("score")
        p = _clip(s, eps)
        # The numpy expressions, term for term (app/metrics/logloss.py), so rounding agrees.
        loss = -(y * F.log(p) + (F.lit(1.0) - y) * F.log1p(-p))
        entropy = -(p * F.log(p) + (F.lit(1.0) - p) * F.log1p(-p)) + F.lit(0.0)
        predicted = s
        outcome = y
        correct = (p >= 0.5) == (y == 1.0)
        k = 2
    else:
        k = spec.n_classes
        probs = [F.col(f"p{i}") for i in range(k)]
        clipped = [_clip(c, eps) for c in probs]
        entropy = -_sum([c * F.log(c) for c in clipped])
        p_true = F.element_at(F.array(*clipped), y.cast("int") + 1)
        loss = -F.log(p_true)
        confidence = F.greatest(*probs)
        # numpy's argmax: the first class holding the maximum.
        top = F.coalesce(*(F.when(c == confidence, F.lit(i)) for i, c in enumerate(probs)))
        predicted = confidence
        correct = top.cast("double") == y
        outcome = correct.cast("double")
    extra = [F.when(y == float(i), F.col("weight")).alias(f"w_c{i}") for i in range(k)] + [
        F.when(y == float(i), F.col("weight") * loss).alias(f"wl_c{i}") for i in range(k)
    ]
    w = F.when(labeled, F.col("weight"))
    bin_index = F.least(F.floor(predicted * BINS), F.lit(BINS - 1)).cast("int")
    rows = joined.select(
        ws.alias("ws"),
        F.col("version"),
        *(F.col(f"s{i}") for i in range(n_segments)),
        labeled.alias("labeled"),
        entropy.alias("entropy"),
        w.alias("w"),
        F.when(labeled, loss).alias("loss"),
        F.when(labeled & correct, F.col("weight")).alias("w_correct"),
        F.when(labeled, bin_index).alias("bin"),
        F.when(labeled, predicted).alias("predicted"),
        F.when(labeled, outcome).alias("outcome"),
        *extra,
    )
    if spec.start is not None:
        rows = rows.where(F.col("ws") >= spec.start)
    if spec.end is not None:
        rows = rows.where(F.col("ws") < spec.end)
    return rows


def _sum(cs: list[Column]) -> Column:
    total = cs[0]
    for c in cs[1:]:
        total = total + c
    return total


def _groups(rows: DataFrame, segment_keys: list[str]) -> DataFrame:
    """Each row once per group it belongs to: its window, its version, its segments."""
    dims = [
        F.struct(F.lit(WINDOW).alias("kind"), F.lit("").alias("key"), F.lit("").alias("value")),
        F.struct(
            F.lit("version").alias("kind"), F.lit("").alias("key"), F.col("version").alias("value")
        ),
        *(
            F.struct(
                F.lit("segment").alias("kind"), F.lit(k).alias("key"), F.col(f"s{i}").alias("value")
            )
            for i, k in enumerate(segment_keys)
        ),
    ]
    present = F.filter(F.array(*dims), lambda d: d["value"].isNotNull())
    keep = [
        c
        for c in rows.columns
        if c not in {"version", *(f"s{i}" for i in range(len(segment_keys)))}
    ]
    return rows.select(*keep, F.explode(present).alias("g")).select(
        *keep, "g.kind", "g.key", "g.value"
    )


def _slots(grouped: DataFrame, spec: JobSpec) -> DataFrame:
    """(ws, kind, key, value) -> kept as its own slice or not."""
    counts = grouped.where(F.col("kind") != WINDOW).groupBy("ws", "kind", "key", "value").count()
    rank = F.row_number().over(
        Window.partitionBy("ws", "kind", "key").orderBy(F.col("count").desc(), F.col("value").asc())
    )
    kept = rank <= spec.top_n
    for kind, key, value in spec.pinned:
        kept = kept | ((F.col("kind") == kind) & (F.col("key") == key) & (F.col("value") == value))
    return counts.select("ws", "kind", "key", "value", kept.alias("kept"))


def sums(preds: Predictions, acts: Actuals, spec: JobSpec) -> DataFrame:
    """The aggregated sums, one row per (ws, kind, key, other, value)."""
    rows = scored(
        first_predictions(preds, spec), last_actuals(acts.frame), spec, len(preds.segment_keys)
    )
    grouped = _groups(rows, preds.segment_keys)
    slots = _slots(grouped, spec)
    joined = grouped.join(slots, ["ws", "kind", "key", "value"], "left")
    is_window = F.col("kind") == WINDOW
    other = ~is_window & ~F.col("kept")
    tagged = joined.select(
        *(c for c in grouped.columns if c != "value"),
        other.alias("other"),
        F.when(other, F.lit("")).otherwise(F.col("value")).alias("value"),
    )
    group = ["ws", "kind", "key", "other", "value"]
    by_loss = Window.partitionBy(*group).orderBy(F.col("loss").asc_nulls_last())
    whole = by_loss.rowsBetween(Window.unboundedPreceding, Window.unboundedFollowing)
    upto = by_loss.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    total_w = F.sum("w").over(whole)
    n = F.count("loss").over(whole)
    integral = F.min(F.when(F.col("labeled"), F.col("w") == F.floor(F.col("w")))).over(whole)
    slack = F.when(integral & (total_w <= _EXACT_INTEGER_LIMIT), F.lit(0.0)).otherwise(
        2.0 * n * _MACHINE_EPS * total_w
    )
    windowed = tagged.select(
        "*",
        (F.sum(F.col("w") * F.col("loss")).over(whole) / total_w).alias("mean_loss"),
        F.sum("w").over(upto).alias("cum_w"),
        total_w.alias("total_w"),
        slack.alias("slack"),
    )
    return windowed.groupBy(*group).agg(*_aggregates(spec))


def _aggregates(spec: JobSpec) -> list[Column]:
    w, loss = F.col("w"), F.col("loss")
    aggs = [
        F.count(F.lit(1)).alias("predictions"),
        F.sum("entropy").alias("entropy_sum"),
        F.count("loss").alias("labeled"),
        F.sum("w").alias("w_sum"),
        F.sum(w * loss).alias("wl_sum"),
        F.sum(w * w).alias("w2_sum"),
        F.first("mean_loss", ignorenulls=True).alias("shift"),
        # Centred on the group's mean loss: no cancellation in the stderr.
        F.sum(w * w * (loss - F.col("mean_loss"))).alias("w2l_sum"),
        F.sum(F.pow(w * (loss - F.col("mean_loss")), 2)).alias("spread"),
        F.sum("w_correct").alias("w_correct"),
    ]
    for name, q in QUANTILE_FIELDS.items():  # one column per published quantile field
        reached = F.col("cum_w") >= F.lit(q) * F.col("total_w") - F.col("slack")
        aggs.append(F.min(F.when(reached, loss)).alias(name))
    b = F.col("bin")
    for i in range(BINS):
        inside = b == i
        aggs += [
            F.count(F.when(inside, 1)).alias(f"bin{i}_n"),
            F.sum(F.when(inside, w)).alias(f"bin{i}_w"),
            F.sum(F.when(inside, w * F.col("predicted"))).alias(f"bin{i}_wp"),
            F.sum(F.when(inside, w * F.col("outcome"))).alias(f"bin{i}_wy"),
        ]
    for i in range(max(spec.n_classes, 2)):  # binary: classes 0 and 1
        aggs += [F.sum(f"w_c{i}").alias(f"w_c{i}"), F.sum(f"wl_c{i}").alias(f"wl_c{i}")]
    return aggs


def collect(frame: DataFrame) -> list[dict[str, Any]]:
    """The aggregated rows on the driver: one per window and slice, never raw rows."""
    return [r.asDict() for r in frame.collect()]
