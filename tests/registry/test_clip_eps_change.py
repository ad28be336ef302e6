"""API.md "Models: lifecycle": changing clip_eps of a model with data recomputes every
window and slice, so one history never mixes two eps values and on-demand slices agree
with the stored windows. On SQLite and PostgreSQL."""

from __future__ import annotations

import math

from fastapi.testclient import TestClient

from app import jobs
from tests.conftest import Db

START = "2026-11-20T00:00:00Z"
END = "2026-11-21T00:00:00Z"


def tick(db: Db) -> None:
    jobs.tick(settings=db.settings, factory=db.factory, read_factory=db.read_factory)


def queued(db: Db) -> int:
    """Windows waiting for a compute pass (logged changes and dirty marks)."""
    return db.count("window_changes") + db.count("dirty_windows")


def history(client: TestClient, query: str = "") -> list[dict[str, object]]:
    r = client.get(f"/v1/models/ctr/metrics?start={START}&end={END}{query}")
    assert r.status_code == 200, r.text
    windows: list[dict[str, object]] = r.json()["windows"]
    return windows


def expected_loss(eps: float) -> float:
    # Two windows of one row each: a certain, wrong prediction (score 0, label 1) costs
    # −ln(eps) and a right one (score 1, label 1) costs −ln(1 − eps).
    return -math.log(eps)


def test_clip_eps_change_recomputes_every_window_and_slice(client: TestClient, db: Db) -> None:
    assert client.put("/v1/models/ctr", json={"window": "1h", "clip_eps": 1e-15}).status_code == 200
    predictions = [
        {
            "prediction_id": f"p{h}",
            "timestamp": f"2026-11-20T{h:02d}:00:00Z",
            "score": 0.0,
            "model_version": "v1",
            "segments": {"country": "DE"},
        }
        for h in range(3)
    ]
    client.post("/v1/models/ctr/predictions", json={"predictions": predictions})
    client.post(
        "/v1/models/ctr/actuals",
        json={"actuals": [{"prediction_id": f"p{h}", "label": 1} for h in range(3)]},
    )
    tick(db)
    before = history(client)
    assert len(before) == 3
    assert all(math.isclose(w["log_loss"], expected_loss(1e-15)) for w in before)  # type: ignore[arg-type]

    r = client.put("/v1/models/ctr", json={"clip_eps": 1e-3})
    assert r.status_code == 200 and r.json()["clip_eps"] == 1e-3
    assert queued(db) == 3
    tick(db)

    new = expected_loss(1e-3)
    for query in ("", "&model_version=v1", "&segment=country:DE"):
        windows = history(client, query)
        assert len(windows) == 3, query
        for w in windows:
            assert math.isclose(w["log_loss"], new, rel_tol=1e-12), (query, w)  # type: ignore[arg-type]
    # A combination is computed on demand with the model's eps: it agrees.
    combined = history(client, "&model_version=v1&segment=country:DE")
    assert [w["log_loss"] for w in combined] == [w["log_loss"] for w in history(client)]


def test_same_clip_eps_recomputes_nothing(client: TestClient, db: Db) -> None:
    client.put("/v1/models/ctr", json={"window": "1h", "clip_eps": 1e-7})
    client.post(
        "/v1/models/ctr/predictions",
        json={"predictions": [{"prediction_id": "a", "timestamp": START, "score": 0.3}]},
    )
    tick(db)
    assert queued(db) == 0
    assert client.put("/v1/models/ctr", json={"clip_eps": 1e-7}).status_code == 200
    assert client.put("/v1/models/ctr", json={"description": "x"}).status_code == 200
    assert queued(db) == 0
