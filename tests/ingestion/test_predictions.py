"""Predictions and actuals ingestion: idempotency, and every bad input answered with the
right status and nothing stored (on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from tests.conftest import Db


@pytest.fixture
def model(client: TestClient) -> str:
    assert client.put("/v1/models/ctr", json={"window": "1h"}).status_code == 200
    return "ctr"


def _pred(pid: str, score: float = 0.5, **extra: Any) -> dict[str, Any]:
    return {"prediction_id": pid, "timestamp": "2026-11-20T10:00:00Z", "score": score, **extra}


def _stored(db: Db) -> tuple[int, int, int]:
    return db.count("predictions"), db.count("actuals"), db.pending_windows()


def test_predictions_are_idempotent_first_write_wins(
    client: TestClient, db: Db, model: str
) -> None:
    r = client.post(
        f"/v1/models/{model}/predictions", json={"predictions": [_pred("a", 0.1), _pred("b")]}
    )
    assert r.json() == {"accepted": 2, "duplicates": 0}
    r = client.post(
        f"/v1/models/{model}/predictions",
        json={"predictions": [_pred("a", 0.9), _pred("c"), _pred("c", 0.7)]},
    )
    assert r.json() == {"accepted": 1, "duplicates": 2}
    assert db.count("predictions") == 3
    with db.engine.connect() as conn:
        from sqlalchemy import text

        scores = dict(conn.execute(text("SELECT prediction_id, score FROM predictions")).all())
    assert scores == {"a": 0.1, "b": 0.5, "c": 0.5}


def test_timestamp_defaults_to_now_and_offsets_are_normalised(
    client: TestClient, db: Db, model: str
) -> None:
    r = client.post(
        f"/v1/models/{model}/predictions",
        json={
            "predictions": [
                {"prediction_id": "now", "score": 0.5},
                {"prediction_id": "cet", "score": 0.5, "timestamp": "2026-11-20T11:30:00+01:00"},
            ]
        },
    )
    assert r.status_code == 200
    from sqlalchemy import text

    with db.engine.connect() as conn:
        ws = dict(conn.execute(text("SELECT prediction_id, window_start FROM predictions")).all())
    assert ws["cet"] == 1795168800  # 2026-11-20T10:00:00Z
    import time

    assert abs(ws["now"] - time.time()) < 3700


BAD_PREDICTIONS: list[tuple[str, Any]] = [
    ("naive timestamp", [_pred("x", timestamp="2026-11-20T10:00:00")]),
    ("date only", [_pred("x", timestamp="2026-11-20")]),
    ("unix number timestamp", [_pred("x", timestamp=1795168800)]),
    ("score above 1", [_pred("x", 1.5)]),
    ("score below 0", [_pred("x", -0.1)]),
    ("score string", [_pred("x", "0.5")]),  # type: ignore[arg-type]
    ("score bool", [_pred("x", True)]),
    ("score missing", [{"prediction_id": "x"}]),
    ("probabilities on binary", [_pred("x", probabilities={"a": 1.0})]),
    ("empty id", [_pred("")]),
    ("id too long", [_pred("x" * 257)]),
    ("1 MB id", [_pred("x" * 1_000_000)]),
    ("NUL in id", [_pred("a\x00b")]),
    ("id not a string", [{"prediction_id": 5, "score": 0.5}]),
    ("17 segments", [_pred("x", segments={f"k{i}": "v" for i in range(17)})]),
    ("segment value not string", [_pred("x", segments={"country": 1})]),
    ("segment key with colon", [_pred("x", segments={"a:b": "v"})]),
    ("unknown field", [_pred("x", scroe=0.5)]),
    ("model_version too long", [_pred("x", model_version="v" * 129)]),
    ("one good one bad", [_pred("good"), _pred("bad", 2.0)]),
]


@pytest.mark.parametrize("name,items", BAD_PREDICTIONS, ids=[c[0] for c in BAD_PREDICTIONS])
def test_bad_predictions_are_422_naming_the_record(
    client: TestClient, db: Db, model: str, name: str, items: list[dict[str, Any]]
) -> None:
    r = client.post(f"/v1/models/{model}/predictions", json={"predictions": items})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    bad_index = len(items) - 1
    assert any(d["index"] == bad_index and d["field"] and d["message"] for d in detail), detail
    assert _stored(db) == (0, 0, 0)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_scores_are_422(client: TestClient, db: Db, model: str, literal: bytes) -> None:
    # Python's json accepts these literals; the API must not.
    body = b'{"predictions": [{"prediction_id": "x", "score": ' + literal + b"}]}"
    r = client.post(
        f"/v1/models/{model}/predictions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422
    assert r.json()["detail"][0] == {
        "index": 0,
        "field": "score",
        "message": "must be a finite number (NaN and Infinity are not allowed)",
    }
    assert _stored(db) == (0, 0, 0)


def test_naive_timestamp_message_says_so(client: TestClient, model: str) -> None:
    r = client.post(
        f"/v1/models/{model}/predictions",
        json={"predictions": [_pred("x", timestamp="2026-11-20T10:00:00")]},
    )
    assert "offset" in r.json()["detail"][0]["message"]


@pytest.mark.parametrize(
    "body",
    [b"{", b"not json", b'{"predictions": [1,]}'],
    ids=["truncated", "garbage", "trailing comma"],
)
def test_malformed_json_is_400(client: TestClient, db: Db, model: str, body: bytes) -> None:
    r = client.post(
        f"/v1/models/{model}/predictions",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert "malformed JSON" in r.json()["detail"]
    assert _stored(db) == (0, 0, 0)


@pytest.mark.parametrize(
    "body", [{}, {"predictions": []}, {"predictions": {}}, [], {"predictions": [1]}]
)
def test_wrong_shapes_are_422(client: TestClient, db: Db, model: str, body: Any) -> None:
    r = client.post(f"/v1/models/{model}/predictions", json=body)
    assert r.status_code == 422
    assert _stored(db) == (0, 0, 0)


def test_unknown_model_is_404_saying_how_to_register(client: TestClient, db: Db) -> None:
    for path, body in [
        ("/v1/models/nope/predictions", {"predictions": [_pred("a")]}),
        ("/v1/models/nope/actuals", {"actuals": [{"prediction_id": "a", "label": 1}]}),
        ("/v1/models/nope/metrics", None),
    ]:
        r = client.post(path, json=body) if body else client.get(path)
        assert r.status_code == 404
        assert "PUT /v1/models/nope" in r.json()["detail"]
    assert _stored(db) == (0, 0, 0)


def test_batch_cap_is_413_and_configurable(db: Db) -> None:
    settings = db.settings_with(max_batch_items=5)
    with TestClient(create_app(settings)) as client:
        client.put("/v1/models/ctr", json={})
        ok = client.post(
            "/v1/models/ctr/predictions", json={"predictions": [_pred(str(i)) for i in range(5)]}
        )
        assert ok.status_code == 200
        for key, item in [("predictions", _pred), ("actuals", None)]:
            items = (
                [_pred(f"n{i}") for i in range(6)]
                if item
                else [{"prediction_id": f"n{i}", "label": 1} for i in range(6)]
            )
            r = client.post(f"/v1/models/ctr/{key}", json={key: items})
            assert r.status_code == 413, r.text
            assert "limit is 5" in r.json()["detail"]
            # Over the cap AND invalid: still 413, not 422.
            items[0] = {"prediction_id": ""}
            assert client.post(f"/v1/models/ctr/{key}", json={key: items}).status_code == 413
    assert db.count("predictions") == 5
    assert db.count("actuals") == 0


def test_default_batch_cap_is_10000(client: TestClient, db: Db, model: str) -> None:
    items = [_pred(f"p{i}") for i in range(10_001)]
    r = client.post(f"/v1/models/{model}/predictions", json={"predictions": items})
    assert r.status_code == 413
    r = client.post(f"/v1/models/{model}/predictions", json={"predictions": items[:10_000]})
    assert r.json() == {"accepted": 10_000, "duplicates": 0}


BAD_ACTUALS: list[tuple[str, Any]] = [
    ("label 2", {"prediction_id": "a", "label": 2}),
    ("label -1", {"prediction_id": "a", "label": -1}),
    ("label fractional", {"prediction_id": "a", "label": 0.5}),
    ("label string", {"prediction_id": "a", "label": "1"}),
    ("label missing", {"prediction_id": "a"}),
    ("weight zero", {"prediction_id": "a", "label": 1, "weight": 0}),
    ("weight negative", {"prediction_id": "a", "label": 1, "weight": -1}),
    ("naive timestamp", {"prediction_id": "a", "label": 1, "timestamp": "2026-11-21T08:00:00"}),
    ("id too long", {"prediction_id": "a" * 257, "label": 1}),
]


@pytest.mark.parametrize("name,item", BAD_ACTUALS, ids=[c[0] for c in BAD_ACTUALS])
def test_bad_actuals_are_422_and_store_nothing(
    client: TestClient, db: Db, model: str, name: str, item: dict[str, Any]
) -> None:
    client.post(f"/v1/models/{model}/predictions", json={"predictions": [_pred("a")]})
    before = _stored(db)
    good = {"prediction_id": "a", "label": 0}
    r = client.post(f"/v1/models/{model}/actuals", json={"actuals": [good, item]})
    assert r.status_code == 422, r.text
    assert any(d["index"] == 1 for d in r.json()["detail"])
    assert _stored(db) == before
    assert db.count("actuals") == 0


def test_actuals_accept_bool_labels_and_count_matched_and_pending(
    client: TestClient, db: Db, model: str
) -> None:
    client.post(f"/v1/models/{model}/predictions", json={"predictions": [_pred("a"), _pred("b")]})
    r = client.post(
        f"/v1/models/{model}/actuals",
        json={
            "actuals": [
                {"prediction_id": "a", "label": True},
                {"prediction_id": "b", "label": False, "weight": 2.5},
                {"prediction_id": "later", "label": 1, "timestamp": "2026-11-21T08:00:00Z"},
            ]
        },
    )
    assert r.json() == {"accepted": 3, "matched": 2, "pending": 1, "expired": 0}
    assert db.count("actuals") == 3
