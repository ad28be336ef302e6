"""Read prediction and label logs into canonical columns, refusing bad input loudly.

A wrong column type is found from the schema, before any Spark job runs; bad values
(unparseable, out of range, missing) are counted per column, with one example, by
metrics observed while the job's own scan reads the rows (DataFrame.observe), so
validation costs no separate pass over the input. Either way the error names the input,
the column and what was expected, and the job stops before anything is stored: the
observed counts are checked (`enforce`) after Spark finished and before the store.

Canonical columns: predictions `pid, ts_us, score | p0..pK-1, version, s0..sM, fpath,
rid`; actuals `pid, label, weight, ts_us, fpath, rid` (`label`: 0/1, or the class index).
`fpath, rid` give each row its input order (file path, position in the file) for the
dedup tie-breaks: `rid` is the row's index in its file where the format tells it
(Parquet), else monotonically_increasing_id (which grows with the position in a file).
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from app.spark.columns import ColumnMap

FORMATS = ("parquet", "csv", "delta")
_PROBA_SUM_TOLERANCE = 1e-6  # as the HTTP API (API.md "Predictions")


class SparkInputError(ValueError):
    """An input file cannot be used as it is; names the input and the column."""

    def __init__(self, source: str, column: str, message: str) -> None:
        super().__init__(f"{source}: column {column!r}: {message}")
        self.source = source
        self.column = column


@dataclass(frozen=True)
class _Check:
    column: str
    bad: Column  # true on a bad row
    shown: Column  # what to show of a bad row
    message: str


@dataclass(frozen=True)
class Validation:
    """Checks observed on one input's scan; `enforce` after the job's action ran."""

    source: str
    checks: list[_Check]
    observation: Observation | None


@dataclass(frozen=True)
class Predictions:
    frame: DataFrame
    segment_keys: list[str]  # key of canonical column s{i}
    n_classes: int  # 0 for binary
    validation: Validation
    # The same canonical columns without the checks: for the small look-up job that
    # lists files and slice values (aggregate.codes), which must not redo the checks.
    unchecked: DataFrame
    rid_in_file: bool  # `rid` is the row's index in its file (else only increasing)


@dataclass(frozen=True)
class Actuals:
    frame: DataFrame
    validation: Validation
    unchecked: DataFrame
    rid_in_file: bool


def load(spark: SparkSession, path: str, fmt: str) -> DataFrame:
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}")
    reader = spark.read.format(fmt)
    if fmt == "csv":
        # Every CSV value is read as text and parsed below, so a bad value is reported
        # with its column instead of silently becoming null.
        reader = reader.option("header", True)
    return reader.load(path)


def _col(df: DataFrame, name: str) -> Column:
    return df[f"`{name}`"]


def _dtype(df: DataFrame, name: str) -> T.DataType:
    return df.schema[name].dataType


def _require(df: DataFrame, source: str, name: str, role: str) -> None:
    if name not in df.columns:
        shown = ", ".join(df.columns[:20])
        raise SparkInputError(source, name, f"missing ({role}); the input has: {shown}")


def _as_number(df: DataFrame, source: str, name: str) -> Column:
    t = _dtype(df, name)
    if isinstance(t, T.NumericType):
        return _col(df, name).cast("double")
    if isinstance(t, T.StringType):
        return F.expr(f"try_cast(`{name}` AS DOUBLE)")
    raise SparkInputError(source, name, f"has type {t.simpleString()}; expected a number")


def _as_text(df: DataFrame, source: str, name: str) -> Column:
    t = _dtype(df, name)
    if isinstance(t, T.StringType):
        return _col(df, name)
    if isinstance(t, T.IntegralType):
        return _col(df, name).cast("string")
    raise SparkInputError(source, name, f"has type {t.simpleString()}; expected text")


def _as_micros(df: DataFrame, source: str, name: str) -> Column:
    t = _dtype(df, name)
    if isinstance(t, T.TimestampType | T.TimestampNTZType):
        return F.unix_micros(_col(df, name).cast("timestamp"))
    if isinstance(t, T.StringType):
        return F.unix_micros(F.try_to_timestamp(_col(df, name)))
    raise SparkInputError(
        source, name, f"has type {t.simpleString()}; expected a timestamp or RFC 3339 text"
    )


_observed = 0


def _observe(df: DataFrame, source: str, checks: list[_Check]) -> tuple[DataFrame, Validation]:
    """`df` counting each check's bad rows (and one example) as the job reads it."""
    global _observed
    if not checks:
        return df, Validation(source, checks, None)
    aggs: list[Column] = []
    for i, c in enumerate(checks):
        aggs.append(F.count(F.when(c.bad, 1)).alias(f"n{i}"))
        aggs.append(F.first(F.when(c.bad, c.shown.cast("string")), ignorenulls=True).alias(f"e{i}"))
    _observed += 1  # a name unique in the session: Spark refuses two observations of one name
    observation = Observation(f"lossmon_{source}_{_observed}")
    return df.observe(observation, *aggs), Validation(source, checks, observation)


def enforce(validation: Validation) -> None:
    """Raise on the first check that saw a bad row; call after the job's action."""
    if validation.observation is None:
        return
    row = validation.observation.get
    for i, c in enumerate(validation.checks):
        n = row.get(f"n{i}")
        if n:
            raise SparkInputError(
                validation.source, c.column, f"{n} row(s) {c.message} (e.g. {row[f'e{i}']!r})"
            )


def _row_index(raw: DataFrame) -> bool:
    """Whether the format gives each row's index in its file (Parquet does)."""
    fields = raw.select("_metadata").schema[0].dataType
    return isinstance(fields, T.StructType) and "row_index" in fields.fieldNames()


def _row_order(in_file: bool) -> Column:
    """`rid`: the row's index in its file, else an id that grows with the position."""
    return F.col("_metadata.row_index") if in_file else F.monotonically_increasing_id()


def predictions(
    raw: DataFrame, *, columns: ColumnMap, classes: list[str] | None, source: str = "predictions"
) -> Predictions:
    pid_c = columns.prediction("prediction_id")
    ts_c = columns.prediction("timestamp")
    version_c = columns.prediction("model_version")
    _require(raw, source, pid_c, "prediction_id")
    _require(raw, source, ts_c, "timestamp")
    pid = _as_text(raw, source, pid_c)
    ts = _as_micros(raw, source, ts_c)
    checks = [
        _Check(pid_c, pid.isNull() | (pid == ""), _col(raw, pid_c), "have no prediction id"),
        _Check(ts_c, ts.isNull(), _col(raw, ts_c), "have no timestamp or one that is not RFC 3339"),
    ]
    out: list[Column] = [pid.alias("pid"), ts.alias("ts_us")]
    if classes is None:
        score_c = columns.prediction("score")
        _require(raw, source, score_c, "score")
        score = _as_number(raw, source, score_c)
        checks.append(
            _Check(
                score_c,
                score.isNull() | ~((score >= 0.0) & (score <= 1.0)),
                _col(raw, score_c),
                "have no score or one outside [0, 1]",
            )
        )
        out.append(score.alias("score"))
    else:
        mapped = columns.probability_columns(classes)
        probs = []
        for k, (cls, name) in enumerate(mapped.items()):
            _require(raw, source, name, f"probability of class {cls!r}")
            p = _as_number(raw, source, name)
            checks.append(
                _Check(
                    name,
                    p.isNull() | ~((p >= 0.0) & (p <= 1.0)),
                    _col(raw, name),
                    "have no probability or one outside [0, 1]",
                )
            )
            probs.append(p)
            out.append(p.alias(f"p{k}"))
        total = probs[0]
        for p in probs[1:]:
            total = total + p
        checks.append(
            _Check(
                ", ".join(mapped.values()),
                F.abs(total - 1.0) > _PROBA_SUM_TOLERANCE,
                total,
                "have probabilities that do not sum to 1 ± 1e-6",
            )
        )
    if version_c in raw.columns:
        out.append(F.coalesce(_as_text(raw, source, version_c), F.lit("")).alias("version"))
    else:
        out.append(F.lit("").alias("version"))
    segment_cols = columns.segment_columns(raw.columns)
    keys = sorted(segment_cols)
    for i, key in enumerate(keys):
        name = segment_cols[key]
        _require(raw, source, name, f"segment {key!r}")
        out.append(_as_text(raw, source, name).alias(f"s{i}"))
    rid_in_file = _row_index(raw)
    out += [
        F.col("_metadata.file_path").alias("fpath"),
        _row_order(rid_in_file).alias("rid"),
    ]
    observed, validation = _observe(raw, source, checks)
    return Predictions(
        frame=observed.select(*out),
        segment_keys=keys,
        n_classes=0 if classes is None else len(classes),
        validation=validation,
        unchecked=raw.select(*out),
        rid_in_file=rid_in_file,
    )


def _binary_label(raw: DataFrame, source: str, name: str) -> Column:
    t = _dtype(raw, name)
    c = _col(raw, name)
    if isinstance(t, T.BooleanType):
        return c.cast("double")
    if isinstance(t, T.NumericType):
        return c.cast("double")
    if isinstance(t, T.StringType):
        text = F.lower(F.trim(c))
        return (
            F.when(text.isin("1", "true", "1.0"), F.lit(1.0))
            .when(text.isin("0", "false", "0.0"), F.lit(0.0))
            .otherwise(F.lit(None).cast("double"))
        )
    raise SparkInputError(source, name, f"has type {t.simpleString()}; expected 0/1 or true/false")


def actuals(
    raw: DataFrame, *, columns: ColumnMap, classes: list[str] | None, source: str = "actuals"
) -> Actuals:
    pid_c = columns.actual("prediction_id")
    label_c = columns.actual("label")
    ts_c = columns.actual("timestamp")
    weight_c = columns.actual("weight")
    _require(raw, source, pid_c, "prediction_id")
    _require(raw, source, label_c, "label")
    pid = _as_text(raw, source, pid_c)
    checks = [_Check(pid_c, pid.isNull() | (pid == ""), _col(raw, pid_c), "have no prediction id")]
    if classes is None:
        label = _binary_label(raw, source, label_c)
        expected = "have no label or one other than 0/1 (true/false)"
    else:
        text = _as_text(raw, source, label_c)
        label = F.array_position(F.array(*(F.lit(c) for c in classes)), text).cast("double") - 1.0
        label = F.when(label >= 0.0, label)
        expected = f"have no label or one that is not a class of the model ({', '.join(classes)})"
    checks.append(_Check(label_c, label.isNull(), _col(raw, label_c), expected))
    if weight_c in raw.columns:
        given = _as_number(raw, source, weight_c)
        # A missing weight is the API's default 1.0; a given one must be finite and > 0.
        bad_weight = _col(raw, weight_c).isNotNull() & (
            given.isNull() | ~(given > 0.0) | F.isnan(given) | (given == float("inf"))
        )
        checks.append(
            _Check(weight_c, bad_weight, _col(raw, weight_c), "have a weight that is not > 0")
        )
        weight = F.coalesce(given, F.lit(1.0))
    else:
        weight = F.lit(1.0)
    if ts_c in raw.columns:
        ts = _as_micros(raw, source, ts_c)
        checks.append(
            _Check(
                ts_c,
                _col(raw, ts_c).isNotNull() & ts.isNull(),
                _col(raw, ts_c),
                "have a timestamp that is not RFC 3339",
            )
        )
    else:
        ts = F.lit(None).cast("long")
    observed, validation = _observe(raw, source, checks)
    rid_in_file = _row_index(raw)
    out = [
        pid.alias("pid"),
        label.alias("label"),
        weight.alias("weight"),
        ts.alias("ts_us"),
        F.col("_metadata.file_path").alias("fpath"),
        _row_order(rid_in_file).alias("rid"),
    ]
    return Actuals(
        frame=observed.select(*out),
        validation=validation,
        unchecked=raw.select(*out),
        rid_in_file=rid_in_file,
    )
