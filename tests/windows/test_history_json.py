"""The directly rendered history is exactly what the documented response model
(HistoryOut / WindowOut) would produce from the stored rows, field for field."""

from __future__ import annotations

import json

import numpy as np
from fastapi.testclient import TestClient
from sqlalchemy import select

from app.db import session_scope
from app.windows import service
from app.windows.models import SliceMetric, WindowMetric
from app.windows.schemas import HistoryOut, window_out
from app.windows.values import row_values
from tests.conftest import Db
from tests.windows.reference import make_rows, post_actuals, post_predictions, register


def _stored(db: Db, table: type[WindowMetric] | type[SliceMetric], **where: object) -> list[dict]:
    with session_scope(db.read_factory) as session:
        rows = session.scalars(select(table).filter_by(**where).order_by(table.window_start)).all()
        return [window_out(row_values(r)).model_dump(mode="json") for r in rows]


def test_rendered_history_equals_the_response_model(client: TestClient, db: Db) -> None:
    m = register(client)
    rows = make_rows(np.random.default_rng(3), n=300, windows=4, versions=("a", "b"))
    post_predictions(client, m, rows)
    post_actuals(client, m, [r for r in rows if r.label is not None])
    mc = {"task": "multiclass", "classes": ["x", "y", "z"]}
    assert client.put("/v1/models/mc", json=mc).status_code == 200
    preds = [
        {"prediction_id": "1", "probabilities": {"x": 0.5, "y": 0.25, "z": 0.25}},
        {"prediction_id": "2", "probabilities": {"x": 0.125, "y": 0.125, "z": 0.75}},
    ]
    client.post("/v1/models/mc/predictions", json={"predictions": preds})
    client.post("/v1/models/mc/actuals", json={"actuals": [{"prediction_id": "2", "label": "z"}]})
    service.compute_pass(factory=db.factory, read_factory=db.read_factory, settings=db.settings)

    for model_id in (m, "mc"):
        r = client.get(f"/v1/models/{model_id}/metrics")
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        HistoryOut.model_validate(body)  # the documented shape
        assert body["windows"] == _stored(db, WindowMetric, model_id=model_id)
        assert body["model_version"] is None and body["segments"] == []
    # A precomputed slice, rendered the same way.
    body = client.get(f"/v1/models/{m}/metrics", params={"model_version": "b"}).json()
    assert body["model_version"] == "b"
    expected = _stored(db, SliceMetric, model_id=m, kind="version", value="b", other=False)
    assert body["windows"] == expected and len(expected) == 4
    # Raw text: no NaN/Infinity, compact.
    assert "NaN" not in json.dumps(body)
