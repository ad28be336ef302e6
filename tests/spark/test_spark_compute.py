"""`lossmon spark compute` against the SQL path: the same rows sent over HTTP and
computed by the compute pass give the same windows and slices (sum-based fields to 1e-9
relative; quantiles within the histogram's stated bound), on SQLite and PostgreSQL, with
a real local Spark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import jobs
from app.spark import job
from app.windows import service
from tests.conftest import Db
from tests.spark.data import CLASSES, HOUR, T0, Logs, generate, iso
from tests.spark.helpers import (
    assert_slices_equal,
    assert_windows_equal,
    write_multiclass_csv,
    write_parquet,
)
from tests.windows.reference import api_windows

WINDOWS = 4


def _register(client: TestClient, model: str, multiclass: bool = False) -> None:
    body: dict[str, Any] = {"window": "1h", "clip_eps": 1e-7}
    if multiclass:
        body.update(task="multiclass", classes=list(CLASSES))
    r = client.put(f"/v1/models/{model}", json=body)
    assert r.status_code == 200, r.text


def _post_http(client: TestClient, db: Db, model: str, logs: Logs) -> None:
    for kind, items in (("predictions", logs.http_predictions), ("actuals", logs.http_actuals)):
        for i in range(0, len(items), 5000):
            r = client.post(f"/v1/models/{model}/{kind}", json={kind: items[i : i + 5000]})
            assert r.status_code == 200, r.text
    service.compute_pass(factory=db.factory, read_factory=db.read_factory, settings=db.settings)


def _spark(spark: Any, db: Db, model: str, p: str, a: str, fmt: str, **kw: Any) -> job.RunReport:
    inputs = job.Inputs(model_id=model, predictions=p, actuals=a, fmt=fmt, **kw)
    return job.compute(spark, inputs=inputs, factory=db.factory, top_n=db.settings.slice_top_n)


def test_binary_windows_and_slices_equal_the_sql_path(
    spark: Any, client: TestClient, db: Db, tmp_path: Path
) -> None:
    logs = generate(11, n=1500, windows=WINDOWS)
    p, a = write_parquet(spark, logs, tmp_path)
    _register(client, "b-http")
    _register(client, "b-spark")
    _post_http(client, db, "b-http", logs)
    report = _spark(spark, db, "b-spark", p, a, "parquet")
    assert report.windows == WINDOWS

    want, got = api_windows(client, "b-http"), api_windows(client, "b-spark")
    assert {w["source"] for w in want.values()} == {"database"}
    assert {w["source"] for w in got.values()} == {"spark"}
    assert_windows_equal(got, want)
    # Slices: the same top-N choice, the same `other` rows, the same numbers.
    assert assert_slices_equal(db, "b-spark", "b-http") == report.slices
    kinds = {(k, key) for k, key, *_ in _slice_keys(db, "b-spark")}
    assert kinds == {("version", ""), ("segment", "country"), ("segment", "device")}
    filtered = api_windows(client, "b-spark", segment="country:c00")
    assert_windows_equal(filtered, api_windows(client, "b-http", segment="country:c00"))


def _slice_keys(db: Db, model: str) -> list[tuple[Any, ...]]:
    from tests.spark.helpers import slices_of

    keys = list(slices_of(db, model))
    assert any(other for _, _, other, _, _ in keys)  # 25 countries > top 20: an other row
    return keys


def test_multiclass_from_csv_equals_the_sql_path(
    spark: Any, client: TestClient, db: Db, tmp_path: Path
) -> None:
    logs = generate(12, n=900, windows=3, multiclass=True)
    p, a = write_multiclass_csv(logs, tmp_path)
    _register(client, "m-http", multiclass=True)
    _register(client, "m-spark", multiclass=True)
    _post_http(client, db, "m-http", logs)
    report = _spark(spark, db, "m-spark", p, a, "csv")
    assert report.windows == 3
    want, got = api_windows(client, "m-http"), api_windows(client, "m-spark")
    assert all(w["class_rates"] is not None for w in got.values())
    assert_windows_equal(got, want)
    assert_slices_equal(db, "m-spark", "m-http")


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_reruns_replace_bounded_windows_and_the_compute_pass_keeps_them(
    spark: Any, client: TestClient, db: Db, tmp_path: Path
) -> None:
    logs = generate(13, n=400, windows=WINDOWS)
    p, a = write_parquet(spark, logs, tmp_path)
    _register(client, "b")
    _spark(spark, db, "b", p, a, "parquet")
    first = api_windows(client, "b")
    assert len(first) == WINDOWS

    # --since/--until: only the second window is recomputed (it keeps its numbers).
    second = T0 + HOUR
    report = _spark(spark, db, "b", p, a, "parquet", since=second + 10, until=second + HOUR)
    assert report.windows == 1
    again = api_windows(client, "b")
    assert_windows_equal(again, first)
    changed = {ws for ws in again if again[ws]["computed_at"] != first[ws]["computed_at"]}
    assert changed == {second}

    # An HTTP prediction into a spark window marks it dirty; the pass leaves it alone.
    r = client.post(
        "/v1/models/b/predictions",
        json={"predictions": [{"prediction_id": "http-1", "timestamp": iso(T0 + 5), "score": 0.5}]},
    )
    assert r.status_code == 200
    service.compute_pass(factory=db.factory, read_factory=db.read_factory, settings=db.settings)
    after = api_windows(client, "b")
    assert after[T0]["predictions"] == first[T0]["predictions"]
    assert after[T0]["source"] == "spark" and after[T0]["computed_at"] == again[T0]["computed_at"]


def _alerts(client: TestClient, model: str) -> list[tuple[str, Any]]:
    r = client.get("/v1/alerts", params={"model_id": model})
    assert r.status_code == 200, r.text
    return sorted((a["state"], a.get("window", {}).get("start")) for a in r.json()["alerts"])


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_a_monitor_fires_on_spark_windows_as_on_http_ones(
    spark: Any, client: TestClient, db: Db, tmp_path: Path
) -> None:
    logs = generate(14, n=600, windows=WINDOWS)
    p, a = write_parquet(spark, logs, tmp_path)
    for model in ("a-http", "a-spark"):
        _register(client, model)
        monitor = {
            "name": "loss",
            "rule": {"type": "log_loss_above", "threshold": 0.1},
            "min_labeled": 10,
            "for_windows": 2,
        }
        r = client.post(f"/v1/models/{model}/monitors", json=monitor)
        assert r.status_code in (200, 201), r.text
    _post_http(client, db, "a-http", logs)
    _spark(spark, db, "a-spark", p, a, "parquet")
    jobs.evaluate_monitors(factory=db.factory)
    http_alerts, spark_alerts = _alerts(client, "a-http"), _alerts(client, "a-spark")
    assert http_alerts and http_alerts[0][0] == "firing"
    assert spark_alerts == http_alerts
