"""The SparkSession a `lossmon spark compute` run uses."""

from __future__ import annotations

import importlib.util
from typing import Any

from pyspark.sql import SparkSession


def delta_available() -> bool:
    return importlib.util.find_spec("delta") is not None


def build(
    *,
    master: str | None,
    app_name: str = "lossmon",
    conf: dict[str, str] | None = None,
    delta: bool = False,
) -> SparkSession:
    """A session for the job; `master` None keeps what spark-submit configured.

    UTC session time zone: a timestamp text without an offset is read as UTC, and
    window starts (UTC epoch multiples) never depend on the machine's zone. `delta`
    registers Delta Lake (needs the delta-spark package; only then, so a plain
    Parquet run never depends on Delta's jars).
    """
    builder: Any = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        **(conf or {}),
    }
    if delta:
        if not delta_available():
            raise RuntimeError("--format delta needs the delta-spark package")
        from delta import configure_spark_with_delta_pip

        # Delta Lake registers itself through these two settings (delta-spark docs).
        settings.setdefault("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        settings.setdefault(
            "spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog"
        )
    for key, value in settings.items():
        builder = builder.config(key, value)
    if delta:
        builder = configure_spark_with_delta_pip(builder)
    session: SparkSession = builder.getOrCreate()
    return session
