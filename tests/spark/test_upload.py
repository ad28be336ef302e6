"""`lossmon spark compute --url URL --api-key K`: the same run stored through a real
lossmon server's HTTP API equals the database route's, field for field; a re-run
replaces it; a refused key, an unknown model, a model changed meanwhile or an
unreachable server store nothing and say so; a monitor fires on uploaded windows."""

from __future__ import annotations

import copy
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from app import jobs
from app.api.openapi_examples import EXAMPLES
from app.auth import service as auth_service
from app.cli import cli
from app.db import session_scope
from app.spark import job, remote
from app.windows.models import SliceMetric, WindowMetric
from tests.conftest import Db, Server, start_server, stop_server
from tests.spark.data import HOUR, T0, generate
from tests.spark.helpers import write_parquet

WINDOWS = 3
# A country outside the top 20 of every window: only a monitor's pin makes it a slice.
PINNED = "country:c24"


@pytest.fixture
def keys(db: Db) -> dict[str, str]:
    with session_scope(db.factory) as session:
        return {
            scope: auth_service.create_key(
                session=session,
                scope=scope,  # type: ignore[arg-type]
                name=scope,
                now=datetime.now(UTC),
            ).key
            for scope in ("admin", "ingest", "read")
        }


@pytest.fixture
def lossmon(db: Db, keys: dict[str, str], tmp_path: Path) -> Iterator[Server]:
    server = start_server(db.url, tmp_path)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def files(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    logs = generate(31, n=700, windows=WINDOWS)
    return write_parquet(spark, logs, tmp_path_factory.mktemp("logs"))


def _admin(server: Server, keys: dict[str, str]) -> httpx.Client:
    headers = {"Authorization": f"Bearer {keys['admin']}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def _register(api: httpx.Client, model: str) -> None:
    r = api.put(f"/v1/models/{model}", json={"window": "1h", "clip_eps": 1e-7})
    assert r.status_code == 200, r.text
    for body in (
        {"name": "loss", "min_labeled": 10, "for_windows": 2},
        {"name": "pinned", "min_labeled": 1, "for_windows": 1, "segment": PINNED},
    ):
        rule = {"type": "log_loss_above", "threshold": 0.1}
        r = api.post(f"/v1/models/{model}/monitors", json={**body, "rule": rule})
        assert r.status_code == 201, r.text


def _inputs(model: str, files: tuple[str, str], **kw: Any) -> job.Inputs:
    return job.Inputs(model_id=model, predictions=files[0], actuals=files[1], **kw)


def _rows(db: Db, table: Any, model: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Every stored field but the model id and computed_at, by window (and slice)."""
    with db.engine.connect() as conn:
        rows = conn.execute(select(table).where(table.model_id == model)).mappings().all()
    out = {}
    for r in rows:
        values = {k: v for k, v in r.items() if k not in ("model_id", "computed_at")}
        key = tuple(values.get(k) for k in ("window_start", "kind", "key", "other", "value"))
        out[key] = values
    return out


def _stored(db: Db, model: str) -> tuple[dict[Any, Any], dict[Any, Any]]:
    return _rows(db, WindowMetric, model), _rows(db, SliceMetric, model)


def _computed_at(db: Db, model: str) -> dict[int, Any]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            select(WindowMetric.window_start, WindowMetric.computed_at).where(
                WindowMetric.model_id == model
            )
        ).all()
    return dict(rows)


def _alerts(api: httpx.Client, model: str) -> list[tuple[str, str, Any]]:
    r = api.get("/v1/alerts", params={"model_id": model})
    assert r.status_code == 200, r.text
    listed = api.get(f"/v1/models/{model}/monitors").json()["monitors"]
    monitors = {m["monitor_id"]: m["name"] for m in listed}
    return sorted(
        (monitors[a["monitor_id"]], a["state"], a.get("window", {}).get("start"))
        for a in r.json()["alerts"]
    )


def test_the_api_route_stores_what_the_database_route_stores(
    spark: Any, db: Db, lossmon: Server, keys: dict[str, str], files: tuple[str, str]
) -> None:
    target = remote.Target(lossmon.url, keys["admin"])
    with _admin(lossmon, keys) as api:
        _register(api, "via-db")
        _register(api, "via-api")
        plan = job.remote_plan(target, "via-api")
        assert plan.pinned == {("segment", "country", "c24")}
        assert plan.top_n == db.settings.slice_top_n

        by_db = job.compute(spark, inputs=_inputs("via-db", files), factory=db.factory, top_n=20)
        by_api = job.compute_remote(spark, inputs=_inputs("via-api", files), target=target)
        assert (by_api.windows, by_api.slices, by_api.removed) == (
            by_db.windows,
            by_db.slices,
            0,
        )
        windows, slices = _stored(db, "via-api")
        assert (windows, slices) == _stored(db, "via-db")  # every field, exactly
        assert len(windows) == WINDOWS and {w["source"] for w in windows.values()} == {"spark"}
        assert any(key[1:4] == ("segment", "country", False) and key[4] == "c24" for key in slices)

        # A re-run over a range replaces its windows with the same numbers (the middle
        # one here: its computed_at moves) and leaves the others alone.
        middle = T0 + HOUR
        bounded = _inputs("via-api", files, since=middle + 10, until=middle + HOUR)
        before = _computed_at(db, "via-api")
        again = job.compute_remote(spark, inputs=bounded, target=target)
        assert (again.windows, again.removed) == (1, 0)
        assert _stored(db, "via-api") == _stored(db, "via-db")
        after = _computed_at(db, "via-api")
        assert {ws for ws in after if after[ws] != before[ws]} == {middle}

        # Monitors were flagged in the upload's transaction, as by the database route.
        jobs.evaluate_monitors(factory=db.factory)
        via_api, via_db = _alerts(api, "via-api"), _alerts(api, "via-db")
        assert any(name == "loss" and state == "firing" for name, state, _ in via_api)
        assert via_api == via_db


def test_refusals_store_nothing_and_say_why(
    spark: Any, db: Db, lossmon: Server, keys: dict[str, str], files: tuple[str, str]
) -> None:
    base = ["spark", "compute", "--predictions", files[0], "--actuals", files[1]]
    with _admin(lossmon, keys) as api:
        _register(api, "m")

        # Not an admin key: the CLI stops before Spark starts; the upload itself is 403.
        for scope in ("ingest", "read"):
            run = [*base, "--model", "m", "--url", lossmon.url, "--api-key", keys[scope]]
            result = CliRunner().invoke(cli, run)
            assert result.exit_code == 1, result.output
            assert "HTTP 403" in result.output and "needs an admin key" in result.output
            assert "nothing stored" in result.output
        example = EXAMPLES[("put", "/v1/models/{model_id}/spark-windows")]["request"]
        body = {**example, "model": {**example["model"], "clip_eps": 1e-7}}
        r = httpx.put(
            lossmon.url + "/v1/models/m/spark-windows",
            json=body,
            headers={"Authorization": f"Bearer {keys['ingest']}"},
        )
        assert r.status_code == 403, r.text
        assert api.put("/v1/models/m/spark-windows", json=body).status_code == 200
        r = api.put("/v1/models/m/spark-windows", json={**body, "rows": []})
        assert r.json()["removed"] == 1  # (what the admin stored is replaced by nothing)

        # An unknown model: named, before Spark starts.
        result = CliRunner().invoke(
            cli, [*base, "--model", "nope", "--url", lossmon.url, "--api-key", keys["admin"]]
        )
        assert result.exit_code == 1
        assert "unknown model 'nope'" in result.output and lossmon.url in result.output

        # The model changed while Spark computed: 409, nothing stored.
        target = remote.Target(lossmon.url, keys["admin"])
        plan = job.remote_plan(target, "m")
        assert api.put("/v1/models/m", json={"clip_eps": 1e-6}).status_code == 200
        with pytest.raises(remote.ModelChanged, match="changed since the Spark job read it"):
            job.compute_remote(spark, inputs=_inputs("m", files), target=target, plan=plan)
    assert db.count("window_metrics") == 0
    assert db.count("slice_metrics") == 0


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_the_command_stores_through_the_api(
    spark: Any,
    db: Db,
    lossmon: Server,
    keys: dict[str, str],
    files: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with _admin(lossmon, keys) as api:
        _register(api, "m")
    # The command builds its session with getOrCreate (this module's) and stops it at
    # the end: keep it for the module's other tests.
    monkeypatch.setattr(spark, "stop", lambda: None)
    monkeypatch.setenv("LOSSMON_API_KEY", keys["admin"])  # as the key may be given
    run = ["spark", "compute", "--model", "m", "--predictions", files[0]]
    result = CliRunner().invoke(cli, [*run, "--actuals", files[1], "--url", lossmon.url])
    assert result.exit_code == 0, result.output
    assert f"stored {WINDOWS} windows" in result.output and lossmon.url in result.output
    assert db.count("window_metrics") == WINDOWS


def test_a_run_over_the_server_s_upload_limit_is_refused_before_sending() -> None:
    body = {"rows": [{"window_start": 0}] * 100}
    with pytest.raises(remote.RemoteError, match=r"exceed the upload limit of http://lossmon"):
        remote.upload(remote.Target("http://lossmon", "k"), "m", body, limit=1024)


def test_an_upload_without_an_answer_says_it_may_have_been_stored() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def hang_up() -> None:
            conn, _ = listener.accept()
            conn.recv(65536)
            conn.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        with pytest.raises(remote.OutcomeUnknown, match="may or may not have been stored"):
            remote.upload(remote.Target(url, "k", timeout_s=10), "m", {"rows": []}, limit=1024)
        thread.join(5)


@pytest.fixture
def example(client: TestClient) -> dict[str, Any]:
    assert client.put("/v1/models/ctr", json={}).status_code == 200
    return copy.deepcopy(EXAMPLES[("put", "/v1/models/{model_id}/spark-windows")]["request"])


def _refused(client: TestClient, body: dict[str, Any], status: int = 422) -> Any:
    r = client.put("/v1/models/ctr/spark-windows", json=body)
    assert r.status_code == status, r.text
    return r.json()["detail"]


def test_rows_the_model_cannot_have_are_refused_by_row(
    client: TestClient, db: Db, example: dict[str, Any]
) -> None:
    window, segment = example["rows"]

    def with_row(index: int, **change: Any) -> dict[str, Any]:
        rows = copy.deepcopy(example["rows"])
        for name, value in change.items():
            if name in rows[index]:
                rows[index][name] = value
            else:
                rows[index]["sums"][name] = value
        return {**example, "rows": rows}

    cases = [
        (with_row(0, window_start=T0 + 60), 0, "window_start", "not a multiple"),
        (with_row(1, window_start=T0 + HOUR), 1, "window_start", "outside the upload's range"),
        ({**example, "rows": [segment]}, 0, "window_start", "no window row"),
        ({**example, "rows": [window, window]}, 1, "kind", "a second row"),
        (with_row(0, task="multiclass"), 0, "sums.task", "'binary'"),
        (with_row(0, labeled=11), 0, "sums.labeled", "more labeled"),
        (with_row(0, class_weight=[9.0, 0.5, 0.5]), 0, "sums.class_weight", "needs 2"),
        (with_row(0, loss_sum=1e308, weight_sum=1e-300), 0, "sums", "infinite or NaN"),
    ]
    for body, index, field, message in cases:
        (detail,) = _refused(client, body)
        assert (detail["index"], detail["field"]) == (index, f"rows.{field}"), detail
        assert message in detail["message"], detail
    quantiles = example["rows"][0]["sums"]["quantiles"]
    for wrong in ({k: v for k, v in list(quantiles.items())[1:]}, {**quantiles, "p42": 0.5}):
        # (the example's two rows share one sums object: both are refused)
        for detail in _refused(client, with_row(0, quantiles=wrong)):
            assert detail["field"].endswith("sums.quantiles"), detail
            assert "needs exactly these keys" in detail["message"], detail
    _refused(client, {**example, "start": example["end"]})
    _refused(client, {**example, "model": {**example["model"], "window_seconds": 60}}, 409)
    assert db.count("window_metrics") == 0
    assert client.put("/v1/models/nope/spark-windows", json=example).status_code == 404
    r = client.put("/v1/models/ctr/spark-windows", json=example)
    assert r.json() == {"model_id": "ctr", "windows": 1, "slices": 1, "removed": 0}
