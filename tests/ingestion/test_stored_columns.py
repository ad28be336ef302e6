"""What a prediction batch stores, column for column, whichever shape the batch has: on
PostgreSQL a column with one value on every row goes as one scalar parameter and the
others as arrays (app/ingestion/bulk.py pg_prediction_params); rows are sorted and
deduplicated with or without a Python loop (service.ingest_predictions). Every shape
must store exactly what the rows say, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.conftest import Db

T = "2026-11-20T10:{:02d}:00Z"
WINDOW = int(datetime(2026, 11, 20, 10, tzinfo=UTC).timestamp())  # T's hour
T_US = WINDOW * 1_000_000


def _stored(db: Db, model: str) -> dict[str, tuple[Any, ...]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT prediction_id, ts_us, window_start, score, probabilities, "
                "model_version, segments FROM predictions WHERE model_id = :m"
            ),
            {"m": model},
        ).all()
    return {
        pid: (
            ts,
            ws,
            score,
            None if probs is None else json.loads(probs) if isinstance(probs, str) else probs,
            mv,
            None if seg is None else seg if isinstance(seg, str) else json.dumps(seg),
        )
        for pid, ts, ws, score, probs, mv, seg in rows
    }


def _pred(pid: str, minute: int, score: float, **extra: Any) -> dict[str, Any]:
    return {"prediction_id": pid, "timestamp": T.format(minute), "score": score, **extra}


BINARY_BATCHES: dict[str, list[dict[str, Any]]] = {
    "every column constant but ids, times, scores": [
        _pred(f"p{i}", i, i / 10, model_version="v1", segments={"b": "2", "a": "1"})
        for i in range(5)
    ],
    "nothing optional sent": [_pred(f"p{i}", i, 0.5) for i in range(3)],
    "versions and segments vary, some absent; ids unsorted": [
        _pred("p3", 3, 0.3, model_version="v2", segments={"country": "DE"}),
        _pred("p1", 1, 0.1),
        _pred("p2", 2, 0.2, model_version="v1", segments={"country": "FR", "device": "m"}),
        _pred("p0", 0, 0.0, model_version="v3", segments={}),
    ],
    "repeated ids: the first wins": [
        _pred("p2", 2, 0.2, model_version="a"),
        _pred("p1", 1, 0.1, model_version="b"),
        _pred("p2", 9, 0.9, model_version="c"),
        _pred("p0", 0, 0.0, model_version="a"),
        _pred("p1", 8, 0.8, model_version="c"),
    ],
}


def _expected(batch: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    out: dict[str, tuple[Any, ...]] = {}
    for p in batch:
        if p["prediction_id"] in out:
            continue
        minute = int(p["timestamp"][14:16])
        seg = p.get("segments")
        out[p["prediction_id"]] = (
            T_US + minute * 60_000_000,
            WINDOW,
            p.get("score"),
            p.get("probabilities"),
            p.get("model_version", ""),
            json.dumps(dict(sorted(seg.items()))) if seg else None,
        )
    return out


@pytest.mark.parametrize("name", list(BINARY_BATCHES))
def test_binary_batch_stores_every_column(client: TestClient, db: Db, name: str) -> None:
    assert client.put("/v1/models/m", json={"window": "1h"}).status_code == 200
    batch = BINARY_BATCHES[name]
    r = client.post("/v1/models/m/predictions", json={"predictions": batch})
    expected = _expected(batch)
    assert r.json() == {"accepted": len(expected), "duplicates": len(batch) - len(expected)}
    assert _stored(db, "m") == expected


@pytest.mark.parametrize("same_probabilities", [True, False])
def test_multiclass_batch_stores_every_column(
    client: TestClient, db: Db, same_probabilities: bool
) -> None:
    r = client.put("/v1/models/mc", json={"task": "multiclass", "classes": ["a", "b", "c"]})
    assert r.status_code == 200, r.text
    batch = [
        {
            "prediction_id": f"p{i}",
            "timestamp": T.format(i),
            "probabilities": (
                {"c": 0.1, "b": 0.2, "a": 0.7}
                if same_probabilities
                else {"a": 0.5, "b": i / 10, "c": 0.5 - i / 10}
            ),
            "model_version": f"v{i % 2}",
        }
        for i in range(4)
    ]
    r = client.post("/v1/models/mc/predictions", json={"predictions": batch})
    assert r.json() == {"accepted": 4, "duplicates": 0}
    stored = _stored(db, "mc")
    for i, p in enumerate(batch):
        probs = p["probabilities"]
        assert stored[f"p{i}"] == (
            T_US + i * 60_000_000,
            WINDOW,
            None,
            [probs["a"], probs["b"], probs["c"]],
            f"v{i % 2}",
            None,
        )
