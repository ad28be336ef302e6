"""Writing the generated logs as files and comparing two models' windows field by field."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import types as T
from sqlalchemy import select

from app.metrics.published import QUANTILE_FIELDS
from app.spark.aggregate import QUANTILE_ACCURACY
from app.windows.models import SliceMetric
from tests.conftest import Db
from tests.spark.data import CLASSES, Logs, write_csv

PREDICTION_COLUMNS = [
    "prediction_id",
    "timestamp",
    "model_version",
    "segment.country",
    "segment.device",
]
ACTUAL_COLUMNS = ["prediction_id", "label", "weight", "timestamp"]
_SKIP = {"start", "end", "computed_at", "source", "model_id"}


def write_parquet(spark: SparkSession, logs: Logs, root: Path) -> tuple[str, str]:
    """Binary logs as Parquet (one file each, so the input order is the list order)."""
    pred_schema = T.StructType(
        [
            T.StructField("prediction_id", T.StringType()),
            T.StructField("timestamp", T.TimestampType()),
            T.StructField("score", T.DoubleType()),
            T.StructField("model_version", T.StringType()),
            T.StructField("segment.country", T.StringType()),
            T.StructField("segment.device", T.StringType()),
        ]
    )
    act_schema = T.StructType(
        [
            T.StructField("prediction_id", T.StringType()),
            T.StructField("label", T.LongType()),
            T.StructField("weight", T.DoubleType()),
            T.StructField("timestamp", T.TimestampType()),
        ]
    )

    def ts(v: int | None) -> datetime | None:
        return None if v is None else datetime.fromtimestamp(v, UTC)

    preds = [
        (
            r["prediction_id"],
            ts(r["timestamp"]),
            r["score"],
            r["model_version"],
            r["segment.country"],
            r["segment.device"],
        )
        for r in logs.predictions
    ]
    acts = [(r["prediction_id"], r["label"], r["weight"], ts(r["timestamp"])) for r in logs.actuals]
    p_path, a_path = str(root / "predictions"), str(root / "actuals")
    spark.createDataFrame(preds, pred_schema).coalesce(1).write.parquet(p_path)
    spark.createDataFrame(acts, act_schema).coalesce(1).write.parquet(a_path)
    return p_path, a_path


def write_multiclass_csv(logs: Logs, root: Path) -> tuple[str, str]:
    columns = PREDICTION_COLUMNS + [f"proba.{c}" for c in CLASSES]
    p = write_csv(root / "predictions", logs.predictions, columns)
    a = write_csv(root / "actuals", logs.actuals, ACTUAL_COLUMNS)
    return str(p), str(a)


def close(a: Any, b: Any, where: str) -> None:
    """Equal: ints exactly, floats to 1e-9 relative (1e-12 absolute near zero)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: {a} != {b}"
        for k in a:
            close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a is not None and b is not None, f"{where}: {a} != {b}"
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{where}: {a} != {b}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def near(got: Any, want: Any, where: str) -> None:
    """A quantile from Spark's histogram: within its documented relative bound of the
    exact one (API.md), and missing exactly when the exact one is."""
    assert (got is None) == (want is None), f"{where}: {got} != {want}"
    if want is not None:
        bound = QUANTILE_ACCURACY * abs(want) * (1.0 + 1e-9) + 1e-12
        assert abs(got - want) <= bound, f"{where}: {got} not within {bound} of {want}"


def _field(got: Any, want: Any, k: str, where: str) -> None:
    (near if k in QUANTILE_FIELDS else close)(got, want, where)


def assert_windows_equal(got: dict[int, dict[str, Any]], want: dict[int, dict[str, Any]]) -> None:
    assert sorted(got) == sorted(want)
    for ws in want:
        for k, v in want[ws].items():
            if k not in _SKIP:
                _field(got[ws][k], v, k, f"window {ws} {k}")


def slices_of(db: Db, model_id: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    with db.engine.connect() as conn:
        rows = conn.execute(select(SliceMetric).where(SliceMetric.model_id == model_id)).mappings()
        return {
            (r["kind"], r["key"], r["other"], r["value"], r["window_start"]): dict(r) for r in rows
        }


def assert_slices_equal(db: Db, spark_model: str, http_model: str) -> int:
    got, want = slices_of(db, spark_model), slices_of(db, http_model)
    assert sorted(got) == sorted(want)
    for key, row in want.items():
        for k, v in row.items():
            if k not in _SKIP:
                _field(got[key][k], v, k, f"slice {key} {k}")
        assert got[key]["source"] == "spark" and row["source"] == "database"
    return len(want)
