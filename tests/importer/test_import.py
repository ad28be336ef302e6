"""`lossmon import` (API.md "Bulk import (CLI)") against a real server: files give the
same windows as the same records sent by the client; bad rows are named and skipped,
the good ones imported, the exit code non-zero; re-running a file is safe."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from lossmon import Client
from typer.testing import CliRunner

from app.cli import cli
from app.windows import service as window_service
from tests.conftest import Db, Server
from tests.windows.reference import T0, iso

CLASSES = ["cat", "dog", "fish"]
COUNTRIES = ["DE", "FR", "US", "BR"]


def _multiclass_records(n: int, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([2.0, 1.0, 1.0], size=n)
    probs[:, 2] = 1.0 - probs[:, 0] - probs[:, 1]  # sums to 1 within float rounding
    predictions, actuals = [], []
    for i in range(n):
        segments = {"country": COUNTRIES[int(rng.integers(4))]}
        if rng.random() < 0.5:
            segments["device"] = "ios" if rng.random() < 0.3 else "android"
        predictions.append(
            {
                "prediction_id": f"r{i:06d}",
                "timestamp": iso(T0 + int(rng.integers(4 * 3600))),
                "probabilities": dict(zip(CLASSES, probs[i].tolist(), strict=True)),
                "model_version": "v1" if rng.random() < 0.6 else "v2",
                "segments": segments,
            }
        )
        if rng.random() < 0.9:
            actual: dict[str, Any] = {
                "prediction_id": f"r{i:06d}",
                "label": CLASSES[int(rng.choice(3, p=probs[i]))],
            }
            if rng.random() < 0.3:
                actual["weight"] = float(np.round(rng.uniform(0.5, 2.0), 3))
            actuals.append(actual)
    return predictions, actuals


def _flat(record: dict[str, Any]) -> dict[str, Any]:
    """A record as file columns: segment.<key>, proba.<class>."""
    out = {k: v for k, v in record.items() if k not in ("segments", "probabilities")}
    for key, value in (record.get("segments") or {}).items():
        out[f"segment.{key}"] = value
    for cls, p in (record.get("probabilities") or {}).items():
        out[f"proba.{cls}"] = p
    return out


def _write_csv(path: Path, records: list[dict[str, Any]]) -> Path:
    rows = [_flat(r) for r in records]
    columns = sorted({c for r in rows for c in r})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)  # floats as repr: they round-trip exactly
    return path


def _write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    rows = [_flat(r) for r in records]
    columns = sorted({c for r in rows for c in r})
    pq.write_table(pa.table({c: [r.get(c) for r in rows] for c in columns}), path)
    return path


def _import(kind: str, path: Path, model: str, server: Server) -> Any:
    return CliRunner().invoke(
        cli, ["import", kind, str(path), "--model", model, "--url", server.url]
    )


def _windows(server: Server, model: str, **params: Any) -> list[dict[str, Any]]:
    with Client(server.url) as lm:
        got = lm.metrics(model, **params)
    windows = got["windows"] if isinstance(got, dict) else got
    return [{k: v for k, v in w.items() if k != "computed_at"} for w in windows]


def _same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative: sums follow the rows' read order, which differs
    between two models whose rows were inserted in different batches."""
    if isinstance(a, float) and isinstance(b, float):
        return bool(a == pytest.approx(b, rel=1e-9, abs=1e-12))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_csv_and_parquet_imports_equal_the_client(db: Db, server: Server, tmp_path: Path) -> None:
    predictions, actuals = _multiclass_records(100_000, seed=5)
    with Client(server.url) as lm:
        for model in ("files", "client"):
            lm.put_model(model, task="multiclass", classes=CLASSES, window="1h")
        lm.log_predictions("client", predictions)
        lm.log_actuals("client", actuals)

    result = _import("predictions", _write_csv(tmp_path / "p.csv", predictions), "files", server)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == "imported 100000, duplicates 0, rejected 0"
    result = _import("actuals", _write_parquet(tmp_path / "a.parquet", actuals), "files", server)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == (
        f"imported {len(actuals)}, duplicates 0, rejected 0"
    )

    window_service.compute_pass(
        factory=db.factory, read_factory=db.read_factory, settings=db.settings
    )
    whole = _windows(server, "files")
    assert len(whole) == 4
    assert _same(whole, _windows(server, "client"))
    for params in ({"segments": {"country": "BR"}}, {"model_version": "v2"}):
        assert _same(_windows(server, "files", **params), _windows(server, "client", **params))


def test_parquet_predictions_and_ndjson_actuals(db: Db, server: Server, tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    predictions = [
        {
            "prediction_id": f"b{i}",
            "timestamp": iso(T0 + 7 * i),
            "score": float(rng.random()),
            "segments": {"country": COUNTRIES[i % 4]},
        }
        for i in range(2_000)
    ]
    actuals = [
        {"prediction_id": f"b{i}", "label": int(rng.random() < 0.3)} for i in range(0, 2_000, 2)
    ]
    ndjson = tmp_path / "a.ndjson"
    ndjson.write_text("".join(json.dumps(a) + "\n" for a in actuals))
    with Client(server.url) as lm:
        lm.put_model("files", window="1h")
        lm.put_model("client", window="1h")
        lm.log_predictions("client", predictions)
        lm.log_actuals("client", actuals)
    assert (
        _import(
            "predictions", _write_parquet(tmp_path / "p.parquet", predictions), "files", server
        ).exit_code
        == 0
    )
    assert _import("actuals", ndjson, "files", server).exit_code == 0
    window_service.compute_pass(
        factory=db.factory, read_factory=db.read_factory, settings=db.settings
    )
    assert _same(_windows(server, "files"), _windows(server, "client"))
    assert _same(
        _windows(server, "files", segments={"country": "FR"}),
        _windows(server, "client", segments={"country": "FR"}),
    )


BAD_CSV = """prediction_id,timestamp,score,segment.country
ok-1,2026-11-20T10:00:00Z,0.1,DE
ok-2,2026-11-20T10:01:00Z,0.2,FR
bad-score,2026-11-20T10:02:00Z,abc,DE
bad-range,2026-11-20T10:03:00Z,1.5,DE
ok-3,2026-11-20T10:04:00Z,0.3,
,2026-11-20T10:05:00Z,0.4,DE
bad-time,2026-11-20T10:06:00,0.5,DE
ok-4,2026-11-20T10:07:00Z,0.6,US
"""


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_bad_rows_are_named_and_the_good_ones_imported(
    db: Db, server: Server, tmp_path: Path
) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(BAD_CSV)
    with Client(server.url) as lm:
        lm.put_model("ctr", window="1h")
    result = _import("predictions", path, "ctr", server)
    assert result.exit_code == 1
    assert result.stdout.strip().splitlines()[-1] == "imported 4, duplicates 0, rejected 4"
    report = result.stderr
    assert "mixed.csv: line 4: field 'score'" in report  # not a number: refused locally
    assert "mixed.csv: line 5: field 'score'" in report  # > 1: refused by the server
    assert "mixed.csv: line 7: field 'prediction_id'" in report
    assert "mixed.csv: line 8: field 'timestamp'" in report
    assert db.count("predictions") == 4

    # Resumable: the same file again stores nothing twice.
    again = _import("predictions", path, "ctr", server)
    assert again.exit_code == 1
    assert again.stdout.strip().splitlines()[-1] == "imported 0, duplicates 4, rejected 4"
    assert db.count("predictions") == 4
