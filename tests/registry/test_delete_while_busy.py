"""A model deleted while data for it is being ingested or computed: the writers answer
cleanly (404: the model is gone; a compute pass writes nothing for it), never a 500 from
a vanished foreign key, never a deadlock against the DELETE's cascade."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.main import create_app
from app.windows import service
from tests.conftest import Db
from tests.windows.reference import (
    assert_api_matches,
    make_rows,
    post_actuals,
    post_predictions,
    register,
)


def _delete_behind_the_apps_back(db: Db, model_id: str) -> None:
    """As another API process would: the app's own model cache still holds it."""
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM models WHERE id = :m"), {"m": model_id})


def test_ingest_for_a_model_another_process_deleted_is_404(client: TestClient, db: Db) -> None:
    m = register(client)
    rows = make_rows(np.random.default_rng(1), n=20, windows=2)
    post_predictions(client, m, rows[:10])  # the model's shape is now cached
    _delete_behind_the_apps_back(db, m)
    preds = client.post(
        f"/v1/models/{m}/predictions", json={"predictions": [r.prediction() for r in rows[10:]]}
    )
    assert preds.status_code == 404, preds.text
    labeled = [r for r in rows if r.label is not None]
    acts = client.post(f"/v1/models/{m}/actuals", json={"actuals": [r.actual() for r in labeled]})
    assert acts.status_code == 404, acts.text
    assert db.count("predictions") == 0 and db.count("actuals") == 0


def test_actuals_racing_an_uncommitted_delete_get_404_not_500(pg_db: Db) -> None:
    """PostgreSQL (SQLite has one writer: the race cannot happen there). The DELETE holds
    the model row while the actuals arrive; they must wait for it and then answer 404.
    Before: the insert's foreign-key check waited, then failed on the vanished key (500)."""
    with TestClient(create_app(pg_db.settings)) as client:
        m = register(client)
        rows = make_rows(np.random.default_rng(2), n=40, windows=2, labeled_frac=1.0)
        post_predictions(client, m, rows)
        answer: dict[str, Any] = {}

        def send() -> None:
            try:
                answer["r"] = client.post(
                    f"/v1/models/{m}/actuals", json={"actuals": [r.actual() for r in rows]}
                )
            except Exception as exc:  # the app raised instead of answering: a 500
                answer["error"] = repr(exc)

        with psycopg.connect(pg_db.url.replace("+psycopg", "")) as deleter:
            deleter.execute("DELETE FROM models WHERE id = %s", (m,))  # not committed yet
            thread = threading.Thread(target=send)
            thread.start()
            # Commit only once the request waits for the DELETE's lock (well inside the
            # request's own 2 s lock bound).
            deadline = time.monotonic() + 10
            waiting = 0
            while not waiting and time.monotonic() < deadline and thread.is_alive():
                waiting = pg_db.count(
                    "pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
                time.sleep(0.005)
            assert waiting, answer
            deleter.commit()
            thread.join(30)
    assert "r" in answer, answer
    r = answer["r"]
    assert r.status_code == 404, r.text
    assert pg_db.count("actuals") == 0


def test_compute_pass_skips_a_model_deleted_mid_pass(client: TestClient, db: Db) -> None:
    gone = register(client, "gone")
    kept = register(client, "kept")
    rows = make_rows(np.random.default_rng(3), n=60, windows=3)
    for model in (gone, kept):
        post_predictions(client, model, rows)
        post_actuals(client, model, [r for r in rows if r.label is not None])
    claimed = threading.Event()
    release = threading.Event()

    class HoldingClock:
        calls = 0

        def __call__(self) -> float:
            self.calls += 1
            if self.calls == 2:  # the windows are claimed, not computed yet
                claimed.set()
                release.wait(30)
            return datetime.now(UTC).timestamp()

    outcome: dict[str, Any] = {}

    def compute() -> None:
        try:
            outcome["result"] = service.compute_pass(
                factory=db.factory,
                read_factory=db.read_factory,
                settings=db.settings_with(compute_batch_windows=100),
                clock=HoldingClock(),
            )
        except Exception as exc:  # reported below, with the test's own assertion
            outcome["error"] = exc

    thread = threading.Thread(target=compute)
    thread.start()
    assert claimed.wait(30)
    assert client.delete(f"/v1/models/{gone}").status_code == 204
    release.set()
    thread.join(60)
    assert "error" not in outcome, outcome
    assert outcome["result"].computed == 3  # the kept model's windows only
    assert db.count(f"window_metrics WHERE model_id = '{gone}'") == 0
    assert db.count(f"slice_metrics WHERE model_id = '{gone}'") == 0
    assert db.pending_windows() == 0
    assert_api_matches(client, kept, rows)
