"""Models registry over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Db


def test_put_creates_then_get_and_list(client: TestClient) -> None:
    r = client.put("/v1/models/ctr", json={"window": "15m", "description": "CTR model"})
    assert r.status_code == 200
    body = r.json()
    assert body["model_id"] == "ctr"
    assert body["task"] == "binary"
    assert body["window_seconds"] == 900
    assert body["clip_eps"] == 1e-15
    assert body["created_at"].endswith("Z")
    assert client.get("/v1/models/ctr").json() == body
    assert [m["model_id"] for m in client.get("/v1/models").json()["models"]] == ["ctr"]


def test_put_is_idempotent_and_partial_update_keeps_other_fields(client: TestClient) -> None:
    first = client.put("/v1/models/ctr", json={"window": "1d", "reference_base_rate": 0.1}).json()
    again = client.put("/v1/models/ctr", json={"window": "1d", "reference_base_rate": 0.1}).json()
    assert again["updated_at"] == first["updated_at"]
    updated = client.put("/v1/models/ctr", json={"description": "new"}).json()
    assert updated["window"] == "1d"
    assert updated["reference_base_rate"] == 0.1
    assert updated["description"] == "new"


def test_changing_window_with_data_is_409(client: TestClient) -> None:
    client.put("/v1/models/ctr", json={"window": "1h"})
    # Without data the window may change.
    assert client.put("/v1/models/ctr", json={"window": "2h"}).status_code == 200
    client.post(
        "/v1/models/ctr/predictions", json={"predictions": [{"prediction_id": "a", "score": 0.5}]}
    )
    r = client.put("/v1/models/ctr", json={"window": "1h"})
    assert r.status_code == 409
    assert "window" in r.json()["detail"]
    assert client.get("/v1/models/ctr").json()["window"] == "2h"


def test_actuals_alone_count_as_data(client: TestClient) -> None:
    client.put("/v1/models/ctr", json={"window": "1h"})
    client.post("/v1/models/ctr/actuals", json={"actuals": [{"prediction_id": "a", "label": 1}]})
    assert client.put("/v1/models/ctr", json={"window": "2h"}).status_code == 409


def test_bad_definitions_are_422_and_store_nothing(client: TestClient, db: Db) -> None:
    cases = [
        {"window": "1w"},
        {"window": "0h"},
        {"window": "h"},
        {"task": "ranking"},
        {"clip_eps": 0},
        {"clip_eps": 0.7},
        {"reference_base_rate": 1.5},
        {"task": "binary", "classes": ["a", "b"]},
        {"unknown_field": 1},
    ]
    for body in cases:
        r = client.put("/v1/models/ctr", json=body)
        assert r.status_code == 422, body
        assert isinstance(r.json()["detail"], list)
    assert db.count("models") == 0


def test_multiclass_model(client: TestClient, db: Db) -> None:
    r = client.put("/v1/models/m", json={"task": "multiclass", "classes": ["cat", "dog", "fish"]})
    assert r.status_code == 200, r.text
    assert r.json()["task"] == "multiclass"
    assert r.json()["classes"] == ["cat", "dog", "fish"]
    assert client.get("/v1/models/m").json()["classes"] == ["cat", "dog", "fish"]


def test_multiclass_needs_unique_classes(client: TestClient, db: Db) -> None:
    cases = [
        {"task": "multiclass"},
        {"task": "multiclass", "classes": ["cat"]},
        {"task": "multiclass", "classes": ["cat", "cat"]},
        {"task": "multiclass", "classes": ["cat", ""]},
        {"task": "multiclass", "classes": None},
        {"classes": ["cat", "dog"]},
    ]
    for body in cases:
        r = client.put("/v1/models/m", json=body)
        assert r.status_code == 422, (body, r.text)
    assert db.count("models") == 0


def test_multiclass_classes_cannot_change_once_data_exists(client: TestClient, db: Db) -> None:
    body = {"task": "multiclass", "classes": ["cat", "dog"]}
    assert client.put("/v1/models/m", json=body).status_code == 200
    # Without data the class list may still be corrected.
    body["classes"] = ["cat", "dog", "fish"]
    assert client.put("/v1/models/m", json=body).status_code == 200
    probabilities = {"cat": 0.5, "dog": 0.25, "fish": 0.25}
    r = client.post(
        "/v1/models/m/predictions",
        json={"predictions": [{"prediction_id": "a", "probabilities": probabilities}]},
    )
    assert r.status_code == 200, r.text
    body["classes"] = ["cat", "fish", "dog"]
    r = client.put("/v1/models/m", json=body)
    assert r.status_code == 409
    assert "classes" in r.json()["detail"]
    r = client.put("/v1/models/m", json={"task": "binary"})
    assert r.status_code == 409


def test_model_id_pattern(client: TestClient) -> None:
    assert client.put("/v1/models/" + "x" * 129, json={}).status_code == 422
    assert client.put("/v1/models/bad%20id", json={}).status_code == 422
    assert client.put("/v1/models/ok.id-1_2", json={}).status_code == 200


def test_unknown_model_is_404(client: TestClient) -> None:
    r = client.get("/v1/models/nope")
    assert r.status_code == 404
    assert "PUT /v1/models/nope" in r.json()["detail"]
