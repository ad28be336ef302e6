"""Bad input files are refused with an error that names the input and the column, and
nothing is stored; so is an unknown model (also from the command line, before any JVM)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from app.cli import cli
from app.spark import job
from app.spark.columns import parse
from app.spark.read import SparkInputError
from tests.conftest import Db
from tests.spark.data import CLASSES, generate, write_csv
from tests.spark.helpers import ACTUAL_COLUMNS, PREDICTION_COLUMNS, write_parquet

pytestmark = pytest.mark.parametrize("db", ["sqlite"], indirect=True)


@pytest.fixture
def files(spark: Any, tmp_path: Path) -> tuple[str, str, Any]:
    logs = generate(21, n=60, windows=2)
    p, a = write_parquet(spark, logs, tmp_path / "good")
    return p, a, logs


def _run(spark: Any, db: Db, model: str, p: str, a: str, fmt: str = "parquet", **kw: Any) -> Any:
    inputs = job.Inputs(model_id=model, predictions=p, actuals=a, fmt=fmt, **kw)
    return job.compute(spark, inputs=inputs, factory=db.factory, top_n=20)


def _nothing_stored(db: Db) -> None:
    assert db.count("window_metrics") == 0
    assert db.count("slice_metrics") == 0


@pytest.fixture
def model(client: TestClient) -> str:
    assert client.put("/v1/models/m", json={"window": "1h"}).status_code == 200
    return "m"


def test_missing_column_is_named(
    spark: Any, db: Db, model: str, files: Any, tmp_path: Path
) -> None:
    p, a, _ = files
    no_score = str(tmp_path / "no-score")
    spark.read.parquet(p).drop("score").write.parquet(no_score)
    with pytest.raises(SparkInputError, match=r"predictions: column 'score': missing"):
        _run(spark, db, model, no_score, a)
    _nothing_stored(db)


def test_wrong_type_is_named(spark: Any, db: Db, model: str, files: Any, tmp_path: Path) -> None:
    p, a, _ = files
    bad = str(tmp_path / "ts-as-number")
    frame = spark.read.parquet(p).selectExpr("*", "unix_seconds(timestamp) AS ts_number")
    frame.drop("timestamp").withColumnRenamed("ts_number", "timestamp").write.parquet(bad)
    with pytest.raises(SparkInputError, match=r"predictions: column 'timestamp': has type bigint"):
        _run(spark, db, model, bad, a)
    weights = str(tmp_path / "weight-as-date")
    spark.read.parquet(a).selectExpr(
        "prediction_id", "label", "DATE'2026-01-01' AS weight"
    ).write.parquet(weights)
    with pytest.raises(SparkInputError, match=r"actuals: column 'weight': has type date"):
        _run(spark, db, model, p, weights)
    _nothing_stored(db)


def test_bad_values_are_named_with_an_example(
    spark: Any, db: Db, model: str, files: Any, tmp_path: Path
) -> None:
    _, _a, logs = files
    rows = [dict(r) for r in logs.predictions]
    rows[7]["score"] = 1.5
    p = write_csv(tmp_path / "p", rows, [*PREDICTION_COLUMNS, "score"])
    acts = write_csv(tmp_path / "a", logs.actuals, ACTUAL_COLUMNS)
    with pytest.raises(
        SparkInputError,
        match=r"column 'score': 1 row\(s\) have no score or one outside \[0, 1\] \(e.g. '1.5'\)",
    ):
        _run(spark, db, model, str(p), str(acts), fmt="csv")
    labels = [dict(r) for r in logs.actuals]
    labels[3]["label"] = "maybe"
    bad_labels = write_csv(tmp_path / "a2", labels, ACTUAL_COLUMNS)
    good_p = write_csv(tmp_path / "p2", logs.predictions, [*PREDICTION_COLUMNS, "score"])
    with pytest.raises(SparkInputError, match=r"actuals: column 'label': 1 row\(s\)"):
        _run(spark, db, model, str(good_p), str(bad_labels), fmt="csv")
    _nothing_stored(db)


def test_columns_file_maps_other_names(
    spark: Any, db: Db, model: str, files: Any, tmp_path: Path
) -> None:
    p, a, _ = files
    renamed = str(tmp_path / "renamed")
    spark.read.parquet(p).withColumnRenamed("score", "p").withColumnRenamed(
        "segment.country", "geo"
    ).write.parquet(renamed)
    columns = parse({"predictions": {"score": "p", "segments": {"country": "geo"}}})
    report = _run(spark, db, model, renamed, a, columns=columns)
    assert report.windows == 2
    # A mapped column that is not there is named by its input name.
    wrong = parse({"predictions": {"score": "prob"}})
    with pytest.raises(SparkInputError, match=r"column 'prob': missing \(score\)"):
        _run(spark, db, model, renamed, a, columns=wrong)


def test_unknown_model_stores_nothing(spark: Any, db: Db, files: Any) -> None:
    p, a, _ = files
    with pytest.raises(job.UnknownModel, match="unknown model 'nope'"):
        _run(spark, db, "nope", p, a)
    _nothing_stored(db)
    result = CliRunner().invoke(
        cli,
        [
            "spark",
            "compute",
            "--model",
            "nope",
            "--predictions",
            p,
            "--actuals",
            a,
            "--database-url",
            db.url,
        ],
    )
    assert result.exit_code == 1
    assert "unknown model 'nope'" in result.output and "nothing stored" in result.output


def test_multiclass_label_outside_the_classes(
    spark: Any, db: Db, client: TestClient, tmp_path: Path
) -> None:
    body = {"window": "1h", "task": "multiclass", "classes": list(CLASSES)}
    assert client.put("/v1/models/mc", json=body).status_code == 200
    logs = generate(22, n=40, windows=1, multiclass=True)
    logs.actuals[0]["label"] = "bird"
    p = write_csv(
        tmp_path / "p", logs.predictions, PREDICTION_COLUMNS + [f"proba.{c}" for c in CLASSES]
    )
    a = write_csv(tmp_path / "a", logs.actuals, ACTUAL_COLUMNS)
    with pytest.raises(SparkInputError, match=r"column 'label'.*not a class of the model .*'bird'"):
        _run(spark, db, "mc", str(p), str(a), fmt="csv")
    _nothing_stored(db)


def test_an_unreachable_server_and_delta_without_its_package_are_refused_saying_why(
    db: Db, model: str, files: Any
) -> None:
    p, a, _ = files
    base = ["spark", "compute", "--model", model, "--predictions", p, "--actuals", a]
    down = "http://127.0.0.1:1"  # nothing listens on port 1
    result = CliRunner().invoke(cli, [*base, "--url", down, "--api-key", "k"])
    assert result.exit_code == 1
    assert f"cannot reach lossmon at {down}" in result.output
    assert "nothing stored" in result.output
    both = CliRunner().invoke(cli, [*base, "--url", down, "--database-url", db.url])
    assert both.exit_code == 2 and "not both" in both.output
    if importlib.util.find_spec("delta") is None:
        result = CliRunner().invoke(cli, [*base, "--format", "delta", "--database-url", db.url])
        assert result.exit_code == 2
        assert "needs the optional delta-spark package" in result.output
    _nothing_stored(db)
