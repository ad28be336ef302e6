"""Folding the window-change log beside a model DELETE (PostgreSQL; SQLite has one
writer, so the two cannot interleave there): the fold queues behind the DELETE instead
of deadlocking against its cascade, and leaves nothing behind for the deleted model."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import psycopg
from fastapi.testclient import TestClient

from app.db import session_scope
from app.main import create_app
from app.windows import dirty
from tests.conftest import Db
from tests.windows.reference import make_rows, post_predictions, register


def _waiting_on_a_lock(db: Db) -> int:
    return db.count(
        "pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )


def test_fold_waits_for_a_model_delete_instead_of_deadlocking(pg_db: Db) -> None:
    with TestClient(create_app(pg_db.settings)) as client:
        gone = register(client, "gone")
        kept = register(client, "kept")
        rows = make_rows(np.random.default_rng(5), n=30, windows=3)
        for model in (gone, kept):
            post_predictions(client, model, rows)
    assert pg_db.count(f"window_changes WHERE model_id = '{gone}'") > 0
    outcome: dict[str, Any] = {}

    def fold() -> None:
        try:
            with session_scope(pg_db.factory) as session:
                outcome["touched"] = dirty.fold(session=session)
        except Exception as exc:  # a deadlock lands here; asserted below
            outcome["error"] = exc

    with psycopg.connect(pg_db.url.replace("+psycopg", "")) as deleter:
        # A DELETE's first step: the model row, held while the fold starts.
        deleter.execute("SELECT id FROM models WHERE id = %s FOR UPDATE", (gone,))
        thread = threading.Thread(target=fold)
        thread.start()
        deadline = time.monotonic() + 10
        while not _waiting_on_a_lock(pg_db) and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert _waiting_on_a_lock(pg_db), outcome
        # The fold waits on the model row before touching the log, so the cascade into
        # the log goes through. (Folding the log first, it held those log rows while its
        # foreign-key check waited for the model row: PostgreSQL found a deadlock.)
        deleter.execute("DELETE FROM models WHERE id = %s", (gone,))
        deleter.commit()
        thread.join(30)
    assert "error" not in outcome, outcome
    assert outcome["touched"] == 3  # the kept model's windows
    assert pg_db.count(f"dirty_windows WHERE model_id = '{gone}'") == 0
    assert pg_db.count(f"dirty_windows WHERE model_id = '{kept}'") == 3
    assert pg_db.count("window_changes") == 0
