"""Dedup, join and aggregate in Spark: from canonical prediction and label rows to one
row of sums per (window, slice). Spark SQL expressions only (no Python UDF), and the
driver receives nothing but the aggregated rows (and, from a small first job, the input
file paths and the distinct slice values: `codes`).

Rules (API.md "Lake-scale computation on Apache Spark"):
- the first prediction of an id wins: earliest timestamp, then lowest input order
  (file path, position in the file);
- the last actual wins: latest timestamp, an actual without a timestamp loses to one
  with, then the highest input order (as a re-sent actual replaces the stored one).

Where the time goes decides the shape (bench/spark.py): every stage over the raw rows
is a hash aggregation, never a sort. Predictions and actuals are one union grouped by
id (`per_prediction`), each side's winner picked by min_by/max_by over one decimal(38,0)
ordering key, with version and segment values carried as 64-bit codes (Spark
hash-aggregates only fixed-width buffers; text in the buffer makes it sort every row).
The per-prediction rows are then summed per finest cell (window × version × segment
values; `_cells`), and only those sums are spread over the window and its slices.

Slices are chosen as the SQL path chooses them (app/windows/slices.py): per window and
dimension (model version, each segment key) the top N values by predictions, count
ties broken by the value's text, plus the values monitors watch; the rest of the
dimension forms one `other` slice.

Quantiles come from a log-bucket histogram per window and slice and are within
QUANTILE_ACCURACY (relative) of the exact ones: the bucket in which the cumulative
weight first reaches q·Σw (with the numpy path's rounding slack for fractional weights,
app/metrics/stats.py) holds the exact quantile. The spread Σ (w (ℓ − L))² is summed
per bucket about the bucket's representative and re-centred on the group's mean L term
by term, so nothing cancels.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from app.metrics.published import QUANTILE_FIELDS
from app.spark.read import Actuals, Predictions

WINDOW = "window"  # group kind of a whole window (slices use VERSION / SEGMENT)
BINS = 10
_EXACT_INTEGER_LIMIT = float(2**53)
_MACHINE_EPS = 2.0**-52
_TS_BOUND = 2**58  # |µs since the epoch| of any Spark timestamp (years 1-9999) is below
# Quantiles come from a log-bucket histogram (DDSketch's mapping): bucket b holds the
# losses in (γ^(b−1), γ^b], reported as 2γ^b/(γ+1), within a relative
# QUANTILE_ACCURACY of every loss in the bucket. API.md and README state this bound.
QUANTILE_ACCURACY = 0.005
_GAMMA = (1.0 + QUANTILE_ACCURACY) / (1.0 - QUANTILE_ACCURACY)
_LOG_GAMMA = math.log(_GAMMA)
_ZERO_BUCKET = -(2**31)  # ℓ == 0 (clip_eps > 0 keeps it out; kept for safety)


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


@dataclass(frozen=True)
class Codes:
    """Fixed-width stand-ins for the text the dedup would otherwise carry (file paths,
    model versions, segment values), so that it runs as a hash aggregation: Spark can
    hash-aggregate only fixed-width buffers, and a min/max over a struct holding text
    makes it sort every row by id instead."""

    pred_files: DataFrame  # fpath -> fidx (rank in path order), off (rows before it)
    act_files: DataFrame
    values: DataFrame  # (kind, key, code, value): xxhash64 code of each slice value
    file_count: int
    rid_bound: int  # every rid of the inputs is below it
    # Set when the ordering fits a long (see _order_key): the smallest timestamp in ms
    # and the rows of the larger input.
    min_ms: int | None
    rows: int


_TEXT_CODES = T.StructType(
    [
        T.StructField("kind", T.StringType(), False),
        T.StructField("key", T.StringType(), False),
        T.StructField("code", T.LongType(), False),
        T.StructField("value", T.StringType(), False),
    ]
)


def _dim(kind: str, key: str, value: Column, name: str) -> Column:
    return F.struct(F.lit(kind).alias("kind"), F.lit(key).alias("key"), value.alias(name))


def _file_stats() -> list[Column]:
    ts = F.col("ts_us")
    return [
        F.count(F.lit(1)).alias("rows"),
        F.min(ts).alias("lo"),
        F.max(ts).alias("hi"),
        F.max(F.when(ts % 1000 != 0, 1).otherwise(0)).alias("sub_ms"),
        F.max("rid").alias("max_rid"),
    ]


def codes(preds: Predictions, acts: Actuals, *, rid_in_file: bool) -> Codes:
    """One small job over the inputs (file paths, timestamps and slice values only, no
    checks): the distinct file paths with their row counts and timestamp range, and the
    distinct slice values, brought to the driver."""
    spark = preds.unchecked.sparkSession
    dim_cols = ["fpath", "version", *(f"s{i}" for i in range(len(preds.segment_keys)))]
    # Distinct combinations first (a hash aggregation over the scan, no per-row arrays),
    # then each column's values; file rows carry their statistics.
    combos = preds.unchecked.groupBy(*dim_cols).agg(*_file_stats())
    stats = ["rows", "lo", "hi", "sub_ms", "max_rid"]
    dims = [
        _dim("pfile", "", F.col("fpath"), "value"),
        _dim("version", "", F.col("version"), "value"),
        *(_dim("segment", k, F.col(f"s{i}"), "value") for i, k in enumerate(preds.segment_keys)),
    ]
    listed = combos.select(F.explode(F.array(*dims)).alias("d"), *stats).select("d.*", *stats)
    label_files = acts.unchecked.groupBy("fpath").agg(*_file_stats())
    label_files = label_files.select(
        F.lit("afile").alias("kind"), F.lit("").alias("key"), F.col("fpath").alias("value"), *stats
    )
    merged = (
        listed.unionByName(label_files)
        .where(F.col("value").isNotNull())
        .groupBy("kind", "key", "value")
        .agg(
            F.sum("rows").alias("rows"),
            F.min("lo").alias("lo"),
            F.max("hi").alias("hi"),
            F.max("sub_ms").alias("sub_ms"),
            F.max("max_rid").alias("max_rid"),
        )
    )
    rows = merged.select("*", F.xxhash64("value").alias("code")).collect()
    files = {k: {r["value"]: r for r in rows if r["kind"] == k} for k in ("pfile", "afile")}
    ranks = {f: i for i, f in enumerate(sorted(set(files["pfile"]) | set(files["afile"])))}
    seen: dict[tuple[str, str, int], str] = {}
    for r in rows:
        if r["kind"] in files:
            continue
        slot = (r["kind"], r["key"], r["code"])
        if seen.setdefault(slot, r["value"]) != r["value"]:
            # 64-bit codes of a few thousand values: practically never; refuse if so.
            raise RuntimeError(
                f"{r['kind']} {r['key']!r}: values {seen[slot]!r} and {r['value']!r} share "
                "a hash code; rename one"
            )
    values = [(WINDOW, "", 0, ""), *((k, key, code, v) for (k, key, code), v in seen.items())]
    file_rows = [r for side in files.values() for r in side.values()]
    rid_bound = max((r["max_rid"] for r in file_rows if r["max_rid"] is not None), default=0) + 1
    tables = {}
    totals = []
    for side, listing in files.items():
        offset, table = 0, []
        for f in sorted(listing):
            table.append((f, ranks[f], offset))
            offset += listing[f]["rows"]
        totals.append(offset)
        tables[side] = spark.createDataFrame(table, "fpath string, fidx long, off long")
    # A long key (cheaper to aggregate than a decimal): timestamps in whole ms, rows
    # numbered per input (offset of the file + index in the file), and (span + 2) × rows
    # below 2^63.
    stamped = [r for r in file_rows if r["lo"] is not None]
    min_ms: int | None = None
    if rid_in_file and stamped and not any(r["sub_ms"] for r in file_rows):
        lo = min(r["lo"] for r in stamped) // 1000
        hi = max(r["hi"] for r in stamped) // 1000
        if (hi - lo + 2) * max(max(totals), 1) < 2**63:
            min_ms = lo
    return Codes(
        pred_files=tables["pfile"],
        act_files=tables["afile"],
        values=spark.createDataFrame(values, _TEXT_CODES),
        file_count=max(len(ranks), 1),
        rid_bound=rid_bound,
        min_ms=min_ms,
        rows=max(max(totals), 1),
    )


def _order_key(codes: Codes, *, missing_first: bool = False) -> Column:
    """(ts, input order) as one fixed-width value that orders like the pair, which
    Spark's min_by/max_by can hash-aggregate. With `missing_first` a null ts sorts below
    every other (an actual without a timestamp)."""
    ts = F.col("ts_us")
    if codes.min_ms is not None:
        # Long: (ms since the inputs' first timestamp) × rows + row number in the input.
        step = F.expr("ts_us div 1000") - F.lit(codes.min_ms) + F.lit(1 if missing_first else 0)
        if missing_first:
            step = F.coalesce(step, F.lit(0).cast("long"))
        return step * F.lit(codes.rows) + (F.col("off") + F.col("rid"))
    # Decimal(38,0): ts in µs (|ts| < 2^58 for years 1-9999) × positions + position.
    position = codes.file_count * codes.rid_bound  # (file rank, rid) as one long below it
    if position >= 2**63 or _TS_BOUND * position >= 10**38:
        raise ValueError(
            f"{codes.file_count} input files x {codes.rid_bound} rows: too many for the "
            "dedup's ordering key; compact the input files"
        )
    d = "decimal(38,0)"
    if missing_first:
        ts = F.coalesce(ts, F.lit(-_TS_BOUND))
    # One decimal multiply-add per row (decimal arithmetic is the costly part here).
    low = F.col("fidx") * F.lit(codes.rid_bound) + F.col("rid")
    return ts.cast(d) * F.lit(str(position)).cast(d) + low.cast(d)


def _code(c: Column) -> Column:
    return F.when(c.isNotNull(), F.xxhash64(c))


def per_prediction(preds: Predictions, acts: Actuals, spec: JobSpec, codes: Codes) -> DataFrame:
    """One row per prediction id: the first prediction's values (earliest timestamp,
    then lowest input order) and the last actual's label and weight (latest timestamp,
    one without a timestamp losing to one with, then highest input order).

    Predictions and actuals are one union grouped by id in a single hash aggregation:
    min_by/max_by over the fixed-width ordering key pick each side's winner, version
    and segment values travel as their codes."""
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
    dims = ["version", *(f"s{i}" for i in range(len(preds.segment_keys)))]
    values = [c for c in df.columns if c not in ("pid", "ts_us", "fpath", "rid", *dims)]
    carried = ["ts_us", *values, *dims]
    pkey = _order_key(codes)
    p = df.join(F.broadcast(codes.pred_files), "fpath").select(
        "pid",
        pkey.alias("pkey"),
        "ts_us",
        *values,
        *(_code(F.col(c)).alias(c) for c in dims),
    )
    key_type = p.schema["pkey"].dataType
    p = p.select(
        "*",
        F.lit(None).cast(key_type).alias("akey"),
        F.lit(None).cast("double").alias("label"),
        F.lit(None).cast("double").alias("weight"),
    )
    a = acts.frame.join(F.broadcast(codes.act_files), "fpath").select(
        "pid",
        F.lit(None).cast(key_type).alias("pkey"),
        *(F.lit(None).cast(p.schema[c].dataType).alias(c) for c in carried),
        # An actual without a timestamp sorts below every one with.
        _order_key(codes, missing_first=True).cast(key_type).alias("akey"),
        "label",
        "weight",
    )
    # Shuffled by id first, so that the whole aggregation runs after the shuffle: ids are
    # nearly unique, and a map-side partial aggregation would only fill a hash map the
    # size of the input (spilling and sorting it) to reduce nothing.
    best = (
        p.unionByName(a)
        .repartition("pid")
        .groupBy("pid")
        .agg(
            F.min("pkey").alias("pkey"),
            *(F.min_by(c, "pkey").alias(c) for c in carried),
            F.max_by("label", "akey").alias("label"),
            F.max_by("weight", "akey").alias("weight"),
        )
    )
    return best.where(F.col("pkey").isNotNull()).drop("pkey")


def _window_ceil(t: int, size: int) -> int:
    return -(-t // size) * size


def _clip(c: Column, eps: float) -> Column:
    return F.least(F.greatest(c, F.lit(eps)), F.lit(1.0 - eps))


def scored(joined: DataFrame, spec: JobSpec) -> DataFrame:
    """One row per prediction: its window, slice value codes and, when labeled, loss
    terms."""
    n_segments = len([c for c in joined.columns if c.startswith("s") and c[1:].isdigit()])
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
        y.alias("y"),  # the class (binary: 0/1); null when unlabeled
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


def _bucket(loss: Column) -> Column:
    """The histogram bucket of a loss: ceil(ln ℓ / ln γ), so ℓ ∈ (γ^(b−1), γ^b]."""
    return F.when(loss == 0.0, F.lit(_ZERO_BUCKET)).otherwise(
        F.ceil(F.log(loss) / F.lit(_LOG_GAMMA)).cast("int")
    )


def _representative(bucket: Column) -> Column:
    """2γ^b / (γ + 1): within a relative QUANTILE_ACCURACY of every loss in bucket b."""
    return F.when(bucket == _ZERO_BUCKET, F.lit(0.0)).otherwise(
        F.lit(2.0 / (_GAMMA + 1.0)) * F.exp(bucket.cast("double") * F.lit(_LOG_GAMMA))
    )


# What every aggregation stage carries per entry: sums (merged by summing), the
# smallest and largest loss, and whether every labeled weight is an integer.
_SUMS = ("n", "ent", "nl", "sw", "sw2", "swl", "m1", "m2", "swc", "swp", "swy")
_CARRIED = (*_SUMS, "lo", "hi", "whole")
# An entry is either a cell's sums by calibration bin and class (CELL) or a cell's loss
# histogram bucket (HIST); one aggregation builds both, so the rows are read once.
CELL, HIST = 0, 1
_GROUP = ("ws", "kind", "key", "other", "value")


def _merge() -> list[Column]:
    return [
        *(F.sum(c).alias(c) for c in _SUMS),
        F.min("lo").alias("lo"),
        F.max("hi").alias("hi"),
        F.min("whole").alias("whole"),
    ]


def _cells(rows: DataFrame, n_segments: int) -> DataFrame:
    """Hash-aggregate the per-prediction rows to the finest cell (window, version,
    segment values): per (calibration bin, class) for the sums, and per loss bucket for
    the histogram. Every later stage works on these entries, never on rows again.
    `m1`, `m2` (histogram entries) are Σ w²(ℓ − r) and Σ (w(ℓ − r))² about the bucket's
    representative r (|ℓ − r| ≤ a·ℓ), so re-centring them on a group's mean later is
    free of cancellation."""
    loss, w = F.col("loss"), F.col("w")
    segs = [f"s{i}" for i in range(n_segments)]
    bucket = _bucket(loss)
    rep = _representative(bucket)
    null_int = F.lit(None).cast("int")
    values = [
        F.lit(1).cast("long").alias("n"),
        F.col("entropy").alias("ent"),
        loss.isNotNull().cast("long").alias("nl"),
        w.alias("sw"),
        (w * w).alias("sw2"),
        (w * loss).alias("swl"),
        (w * w * (loss - rep)).alias("m1"),
        F.pow(w * (loss - rep), 2).alias("m2"),
        F.col("w_correct").alias("swc"),
        (w * F.col("predicted")).alias("swp"),
        (w * F.col("outcome")).alias("swy"),
        loss.alias("lo"),
        loss.alias("hi"),
        F.when(loss.isNotNull(), (w == F.floor(w)).cast("int")).alias("whole"),
    ]
    cell = F.struct(F.lit(CELL).alias("tag"), null_int.alias("bucket"), "bin", "y", *values)
    hist = F.struct(
        F.lit(HIST).alias("tag"),
        bucket.alias("bucket"),
        null_int.alias("bin"),
        F.lit(None).cast("double").alias("y"),
        *values,
    )
    # Unlabeled rows have no histogram entry.
    entries = F.when(loss.isNotNull(), F.array(cell, hist)).otherwise(F.array(cell))
    keys = ["ws", "version", *segs]
    exploded = rows.select(*keys, F.explode(entries).alias("e")).select(*keys, "e.*")
    return exploded.groupBy(*keys, "tag", "bucket", "bin", "y").agg(*_merge())


def _groups(cells: DataFrame, segment_keys: list[str], by: list[str], codes: Codes) -> DataFrame:
    """Each cell entry once per group it belongs to (its window, its version, its
    segments), merged per (window, kind, key, value, *by); values back as text."""
    dims = [
        F.struct(
            F.lit(WINDOW).alias("kind"), F.lit("").alias("key"), F.lit(0).cast("long").alias("code")
        ),
        F.struct(
            F.lit("version").alias("kind"), F.lit("").alias("key"), F.col("version").alias("code")
        ),
        *(
            F.struct(
                F.lit("segment").alias("kind"), F.lit(k).alias("key"), F.col(f"s{i}").alias("code")
            )
            for i, k in enumerate(segment_keys)
        ),
    ]
    present = F.filter(F.array(*dims), lambda d: d["code"].isNotNull())
    exploded = cells.select("ws", F.explode(present).alias("g"), *by, *_CARRIED).select(
        "ws", "g.kind", "g.key", "g.code", *by, *_CARRIED
    )
    merged = exploded.groupBy("ws", "kind", "key", "code", *by).agg(*_merge())
    named = merged.join(F.broadcast(codes.values), ["kind", "key", "code"])
    return named.select("ws", "kind", "key", "value", *by, *_CARRIED)


def _slots(groups: DataFrame, spec: JobSpec) -> DataFrame:
    """(ws, kind, key, value) -> kept as its own slice or not: as the SQL path chooses,
    per (window, kind, key) the top N values by predictions (ties by the value's text)
    and the pinned ones; the rest merge into one `other` slice (value "")."""
    counts = groups.groupBy("ws", "kind", "key", "value").agg(F.sum("n").alias("count"))
    rank = F.row_number().over(
        Window.partitionBy("ws", "kind", "key").orderBy(F.col("count").desc(), F.col("value").asc())
    )
    kept = (F.col("kind") == WINDOW) | (rank <= spec.top_n)
    for kind, key, value in spec.pinned:
        kept = kept | ((F.col("kind") == kind) & (F.col("key") == key) & (F.col("value") == value))
    return counts.select("ws", "kind", "key", "value", (~kept).alias("other"))


def _tag(groups: DataFrame, slots: DataFrame, by: list[str]) -> DataFrame:
    joined = groups.join(F.broadcast(slots), ["ws", "kind", "key", "value"])
    value = F.when(F.col("other"), F.lit("")).otherwise(F.col("value")).alias("value")
    return joined.select("ws", "kind", "key", "other", value, *by, *_CARRIED)


def sums(preds: Predictions, acts: Actuals, spec: JobSpec) -> DataFrame:
    """The aggregated sums, one row per (ws, kind, key, other, value)."""
    keys = preds.segment_keys
    text = codes(preds, acts, rid_in_file=preds.rid_in_file and acts.rid_in_file)
    rows = scored(per_prediction(preds, acts, spec, text), spec)
    # Materialised once (a local checkpoint: executor memory, spilling to disk): several
    # branches below read it, and each branch prunes it differently, so without the
    # checkpoint Spark would scan, dedup and aggregate the input once per branch.
    cells = _cells(rows, len(keys)).localCheckpoint(eager=True)
    by_class = _groups(cells.where(F.col("tag") == CELL), keys, ["bin", "y"], text)
    by_bucket = _groups(cells.where(F.col("tag") == HIST), keys, ["bucket"], text)
    slots = _slots(by_class, spec)
    totals = _tag(by_class, slots, ["bin", "y"]).groupBy(*_GROUP).agg(*_aggregates(spec))
    hist = _tag(by_bucket, slots, ["bucket"]).groupBy(*_GROUP, "bucket").agg(*_merge())
    joined = totals.join(_spread_and_quantiles(hist, totals), list(_GROUP), "left")
    return joined.select(*_GROUP, *_output_columns(spec))


def _output_columns(spec: JobSpec) -> list[str]:
    """The collected row's fields (finalise.window_sums reads them by name)."""
    bins = [f"bin{i}_{s}" for i in range(BINS) for s in ("n", "w", "wp", "wy")]
    k = max(spec.n_classes, 2)
    classes = [f"w_c{i}" for i in range(k)] + [f"wl_c{i}" for i in range(k)]
    return [
        "predictions",
        "entropy_sum",
        "labeled",
        "w_sum",
        "wl_sum",
        "w2_sum",
        "shift",
        "w2l_sum",
        "spread",
        "w_correct",
        *QUANTILE_FIELDS,
        *bins,
        *classes,
    ]


def _aggregates(spec: JobSpec) -> list[Column]:
    aggs = [
        F.sum("n").alias("predictions"),
        F.sum("ent").alias("entropy_sum"),
        F.sum("nl").alias("labeled"),
        F.sum("sw").alias("w_sum"),
        F.sum("swl").alias("wl_sum"),
        F.sum("sw2").alias("w2_sum"),
        (F.sum("swl") / F.sum("sw")).alias("shift"),  # the group's mean loss
        F.sum("swc").alias("w_correct"),
        # For the quantile rule (app/metrics/stats.py): integer weights accumulate
        # exactly; fractional ones get the rounding slack.
        F.when((F.min("whole") == 1) & (F.sum("sw") <= _EXACT_INTEGER_LIMIT), F.lit(0.0))
        .otherwise(2.0 * F.sum("nl") * _MACHINE_EPS * F.sum("sw"))
        .alias("slack"),
    ]
    b = F.col("bin")
    for i in range(BINS):
        inside = b == i
        aggs += [
            F.coalesce(F.sum(F.when(inside, F.col("nl"))), F.lit(0)).alias(f"bin{i}_n"),
            F.sum(F.when(inside, F.col("sw"))).alias(f"bin{i}_w"),
            F.sum(F.when(inside, F.col("swp"))).alias(f"bin{i}_wp"),
            F.sum(F.when(inside, F.col("swy"))).alias(f"bin{i}_wy"),
        ]
    y = F.col("y")
    for i in range(max(spec.n_classes, 2)):  # binary: classes 0 and 1
        aggs += [
            F.sum(F.when(y == float(i), F.col("sw"))).alias(f"w_c{i}"),
            F.sum(F.when(y == float(i), F.col("swl"))).alias(f"wl_c{i}"),
        ]
    return aggs


def _spread_and_quantiles(hist: DataFrame, totals: DataFrame) -> DataFrame:
    """Per group, from its loss histogram: the spread about the group's mean loss and
    the quantiles.

    Spread: Σ w²(ℓ − L) and Σ (w(ℓ − L))², each bucket's sums re-centred from its
    representative onto L term by term, so nothing cancels. Quantile q: the bucket in
    which the cumulative weight (buckets in loss order) first reaches q·Σw (less the
    rounding slack), i.e. the bucket holding the exact quantile; reported as its
    representative clamped to the losses it holds (exact when they are all equal)."""
    ctx = totals.select(*_GROUP, "shift", F.col("w_sum").alias("total_w"), "slack")
    joined = hist.join(F.broadcast(ctx), list(_GROUP))
    upto = (
        Window.partitionBy(*_GROUP)
        .orderBy("bucket")
        .rangeBetween(Window.unboundedPreceding, Window.currentRow)
    )
    rep = _representative(F.col("bucket"))
    d = rep - F.col("shift")
    m1, m2, sw2 = F.col("m1"), F.col("m2"), F.col("sw2")
    cum = joined.select(
        *_GROUP,
        "bucket",
        (m1 + d * sw2).alias("w2l"),
        (m2 + 2.0 * d * m1 + d * d * sw2).alias("spread"),
        F.least(F.greatest(rep, F.col("lo")), F.col("hi")).alias("q_value"),
        F.sum("sw").over(upto).alias("cum_w"),
        "total_w",
        "slack",
    )
    aggs = [F.sum("w2l").alias("w2l_sum"), F.sum("spread").alias("spread")]
    for name, q in QUANTILE_FIELDS.items():  # one column per published quantile field
        reached = F.col("cum_w") >= F.lit(q) * F.col("total_w") - F.col("slack")
        aggs.append(F.min_by("q_value", F.when(reached, F.col("bucket"))).alias(name))
    return cum.groupBy(*_GROUP).agg(*aggs)


def collect(frame: DataFrame) -> list[dict[str, Any]]:
    """The aggregated rows on the driver: one per window and slice, never raw rows."""
    return [r.asDict() for r in frame.collect()]
