"""A real local Spark (local[2]) shared by each test module; skipped, saying why, when
pyspark (the `spark` extra) or a Java runtime is missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("pyspark", reason="the spark extra is not installed")
if shutil.which("java") is None:
    pytest.skip("no Java runtime (Debian: openjdk-17-jre-headless)", allow_module_level=True)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    from app.spark import session

    s = session.build(
        master="local[2]",
        app_name="lossmon-tests",
        conf={
            # Small data: few shuffle partitions keep each stage cheap.
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.ui.enabled": "false",
            "spark.driver.memory": "1g",
        },
    )
    s.sparkContext.setLogLevel("ERROR")
    yield s
    s.stop()
