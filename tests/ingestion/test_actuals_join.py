"""Delayed ground truth: actuals that arrive late, before their prediction, twice, or
corrected all end in exactly the numbers a plain numpy reference computes from the
final data (API.md "Actuals", "Metric history"), on SQLite and PostgreSQL."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from app.db import session_scope
from app.ingestion import bulk
from app.registry.models import MonitoredModel
from app.windows import service
from app.windows.service import PassResult
from tests.conftest import Db
from tests.windows.reference import (
    T0,
    Row,
    api_windows,
    assert_api_matches,
    iso,
    make_rows,
    post_actuals,
    post_predictions,
    register,
    window_of,
    without_labels,
)

WINDOWS = 4


def compute(db: Db) -> PassResult:
    return service.compute_pass(
        factory=db.factory, read_factory=db.read_factory, settings=db.settings
    )


@pytest.fixture
def rows() -> list[Row]:
    return make_rows(np.random.default_rng(20261120), n=320, windows=WINDOWS)


def labeled(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.label is not None]


def windows_of(rows: list[Row]) -> set[int]:
    return {window_of(r.ts) for r in rows}


def test_late_actuals_update_only_their_windows(
    client: TestClient, db: Db, rows: list[Row]
) -> None:
    m = register(client)
    assert post_predictions(client, m, rows) == {"accepted": len(rows), "duplicates": 0}
    assert compute(db).computed == WINDOWS
    # Before any label: coverage 0, only the model's own expectation is known.
    before = assert_api_matches(client, m, without_labels(rows))
    assert all(w["labeled"] == 0 and w["log_loss"] is None for w in before.values())
    assert all(w["expected_log_loss"] is not None for w in before.values())

    # Labels of the first two windows only.
    first_two = sorted(windows_of(rows))[:2]
    early = [r for r in labeled(rows) if window_of(r.ts) in first_two]
    out = post_actuals(client, m, early)
    assert out == {"accepted": len(early), "matched": len(early), "pending": 0, "expired": 0}
    res = compute(db)
    assert res.computed == 2
    assert db.pending_windows() == 0
    known = {r.pid for r in early}
    now = assert_api_matches(
        client, m, [r if r.pid in known else replace(r, label=None) for r in rows]
    )
    for ws in sorted(windows_of(rows))[2:]:
        assert now[ws]["computed_at"] == before[ws]["computed_at"]  # not recomputed

    # The rest, in two shuffled batches with a pass in between.
    rest = [r for r in labeled(rows) if r.pid not in known]
    random.Random(1).shuffle(rest)
    for batch in (rest[: len(rest) // 2], rest[len(rest) // 2 :]):
        post_actuals(client, m, batch)
        assert compute(db).computed == len(windows_of(batch))
        known |= {r.pid for r in batch}
        assert_api_matches(
            client, m, [r if r.pid in known else replace(r, label=None) for r in rows]
        )
    assert_api_matches(client, m, rows)


def test_actuals_before_predictions_are_pending_then_joined(
    client: TestClient, db: Db, rows: list[Row]
) -> None:
    m = register(client)
    lab = labeled(rows)
    random.Random(2).shuffle(lab)
    # Every actual first: none has a prediction yet.
    out = post_actuals(client, m, lab)
    assert out == {"accepted": len(lab), "matched": 0, "pending": len(lab), "expired": 0}
    res = compute(db)
    assert (res.computed, res.swept_windows) == (0, 0)
    assert api_windows(client, m) == {}  # a window is reported once it has a prediction

    # Predictions arrive in two halves (out of order w.r.t. their windows).
    shuffled = list(rows)
    random.Random(3).shuffle(shuffled)
    half = shuffled[: len(shuffled) // 2]
    post_predictions(client, m, half)
    compute(db)
    assert_api_matches(client, m, half)  # exactly the half's rows, with their labels

    # A mixed batch: some actuals matched, some still pending.
    rest = shuffled[len(shuffled) // 2 :]
    mixed = [r for r in shuffled if r.label is not None][:40]
    out = post_actuals(client, m, mixed)
    n_matched = sum(1 for r in mixed if r in half)
    assert out == {"accepted": 40, "matched": n_matched, "pending": 40 - n_matched, "expired": 0}

    post_predictions(client, m, rest)
    compute(db)
    assert_api_matches(client, m, rows)
    assert db.pending_windows() == 0
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM actuals WHERE pending")).scalar_one() == 0


def test_duplicate_actuals_and_predictions_change_nothing(
    client: TestClient, db: Db, rows: list[Row]
) -> None:
    m = register(client)
    post_predictions(client, m, rows)
    lab = labeled(rows)
    post_actuals(client, m, lab)
    compute(db)
    first = assert_api_matches(client, m, rows)

    # The same actuals again (also twice within one batch), and the same predictions.
    out = post_actuals(client, m, lab + lab[:10])
    assert out == {"accepted": len(lab) + 10, "matched": len(lab) + 10, "pending": 0, "expired": 0}
    assert post_predictions(client, m, rows) == {"accepted": 0, "duplicates": len(rows)}
    compute(db)
    again = assert_api_matches(client, m, rows)
    for ws, w in first.items():
        same = {k: v for k, v in w.items() if k != "computed_at"}
        assert {k: v for k, v in again[ws].items() if k != "computed_at"} == same
    assert db.count("actuals") == len(lab)
    assert db.count("predictions") == len(rows)


def test_corrected_actuals_recompute_their_window(
    client: TestClient, db: Db, rows: list[Row]
) -> None:
    m = register(client)
    post_predictions(client, m, rows)
    lab = labeled(rows)
    post_actuals(client, m, lab)
    compute(db)
    before = assert_api_matches(client, m, rows)

    # Corrections in one window only: labels flipped, weights changed.
    target = sorted(windows_of(rows))[1]
    in_target = [r for r in lab if window_of(r.ts) == target]
    flipped = [replace(r, label=1 - r.label) for r in in_target[:5] if r.label is not None]
    reweighted = [replace(r, weight=r.weight * 2.5 + 0.25) for r in in_target[5:12]]
    corrections = flipped + reweighted
    out = post_actuals(client, m, corrections)
    assert out == {
        "accepted": len(corrections),
        "matched": len(corrections),
        "pending": 0,
        "expired": 0,
    }
    res = compute(db)
    assert res.computed == 1

    fixed = {r.pid: r for r in corrections}
    final = [fixed.get(r.pid, r) for r in rows]
    after = assert_api_matches(client, m, final)
    assert after[target]["log_loss"] != before[target]["log_loss"]
    for ws in windows_of(rows) - {target}:
        assert after[ws] == before[ws]  # untouched windows are not recomputed

    # Within one batch the last actual for an id wins; a label given as a bool counts too.
    r0 = in_target[0]
    body = {
        "actuals": [
            {"prediction_id": r0.pid, "label": 1, "weight": 9.0},
            {"prediction_id": r0.pid, "label": False, "weight": 0.5},
        ]
    }
    assert client.post(f"/v1/models/{m}/actuals", json=body).json() == {
        "accepted": 2,
        "matched": 2,
        "pending": 0,
        "expired": 0,
    }
    compute(db)
    fixed[r0.pid] = replace(r0, label=0, weight=0.5)
    assert_api_matches(client, m, [fixed.get(r.pid, r) for r in rows])


def test_correction_while_still_pending_last_write_wins(client: TestClient, db: Db) -> None:
    m = register(client)
    rows = make_rows(np.random.default_rng(7), n=60, windows=3, labeled_frac=1.0)
    post_actuals(client, m, rows)
    corrected = [replace(r, label=1 - (r.label or 0), weight=r.weight + 1.0) for r in rows[::3]]
    assert post_actuals(client, m, corrected)["pending"] == len(corrected)
    post_predictions(client, m, rows)
    compute(db)
    fixed = {r.pid: r for r in corrected}
    assert_api_matches(client, m, [fixed.get(r.pid, r) for r in rows])


def test_actuals_join_only_their_own_models_predictions(client: TestClient, db: Db) -> None:
    m, other = register(client), register(client, "other")
    rows = make_rows(np.random.default_rng(5), n=30, windows=2, labeled_frac=1.0)
    post_predictions(client, other, rows)
    # Same prediction ids, but for model m: nothing to join with yet.
    assert post_actuals(client, m, rows) == {
        "accepted": 30,
        "matched": 0,
        "pending": 30,
        "expired": 0,
    }
    res = compute(db)
    assert (res.computed, res.swept_windows) == (2, 0)
    assert_api_matches(client, other, without_labels(rows))
    assert api_windows(client, m) == {}
    post_predictions(client, m, rows)
    compute(db)
    assert_api_matches(client, m, rows)
    assert_api_matches(client, other, without_labels(rows))


def test_seed_table4_imbalanced_window(client: TestClient, db: Db) -> None:
    labels = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    scores = [0.80, 0.10, 0.20, 0.10, 0.15, 0.22, 0.10, 0.20, 0.15, 0.12]
    m = register(client)
    rows = [
        Row(pid=f"u{i}", ts=T0 + 60 * i, score=s, label=y)
        for i, (s, y) in enumerate(zip(scores, labels, strict=True))
    ]
    post_predictions(client, m, rows)
    post_actuals(client, m, rows)
    compute(db)
    (w,) = api_windows(client, m).values()
    assert w["predictions"] == w["labeled"] == 10
    assert round(w["log_loss"], 4) == 0.1687
    assert round(w["baseline_log_loss"], 4) == 0.3251
    assert w["positive_rate"] == pytest.approx(0.1)
    assert w["skill"] == pytest.approx(1 - w["log_loss"] / w["baseline_log_loss"])
    assert_api_matches(client, m, rows)


def _insert_prediction_unmarked(db: Db, model: str, row: Row) -> None:
    """Store a prediction the way a concurrent ingest transaction would, but without
    its dirty mark: as if a compute pass had already consumed that mark before the
    actual (which did not see the prediction) committed."""
    with session_scope(db.factory) as session:
        version = session.scalar(
            select(MonitoredModel.updated_at).where(MonitoredModel.id == model)
        )
        assert version is not None
        bulk.insert_predictions(
            session=session,
            model_id=model,
            model_version=version,
            rows=bulk.PredictionRows(
                prediction_ids=[row.pid],
                ts_us=[row.ts * 1_000_000],
                window_starts=[window_of(row.ts)],
                scores=[row.score],
                probabilities=[None],
                model_versions=[row.model_version],
                segments=[None],
            ),
            received_us=row.ts * 1_000_000,
        )
        # The insert logged its window; a compute pass consuming it is this:
        session.execute(text("DELETE FROM window_changes"))


def test_pending_sweep_joins_actual_stored_before_its_prediction(
    client: TestClient, db: Db, rows: list[Row]
) -> None:
    m = register(client)
    late = Row(pid="race", ts=T0 + 2 * 3600 + 17, score=0.3, label=1, weight=2.0)
    post_predictions(client, m, rows)
    post_actuals(client, m, labeled(rows))
    assert compute(db).computed == WINDOWS
    before = assert_api_matches(client, m, rows)

    # The actual is stored as pending (its prediction is not visible yet) ...
    assert post_actuals(client, m, [late]) == {
        "accepted": 1,
        "matched": 0,
        "pending": 1,
        "expired": 0,
    }
    assert db.pending_windows() == 0
    # ... and the prediction lands without a dirty mark of its own.
    _insert_prediction_unmarked(db, m, late)
    assert db.pending_windows() == 0

    res = compute(db)
    assert res.swept_windows == 1
    assert res.computed == 1  # only the race's window
    after = assert_api_matches(client, m, [*rows, late])
    target = window_of(late.ts)
    assert after[target]["labeled"] == before[target]["labeled"] + 1
    for ws in windows_of(rows) - {target}:
        assert after[ws]["computed_at"] == before[ws]["computed_at"]
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM actuals WHERE pending")).scalar_one() == 0

    # Nothing is left to sweep: the next pass does no work.
    res = compute(db)
    assert (res.swept_windows, res.computed) == (0, 0)


def test_pending_sweep_after_window_computed_without_the_label(client: TestClient, db: Db) -> None:
    """The other interleaving: prediction committed and its window computed, then an
    actual that did not see the prediction commits as pending, without any dirty mark."""
    m = register(client)
    rows = make_rows(np.random.default_rng(11), n=40, windows=2, labeled_frac=1.0)
    post_predictions(client, m, rows)
    post_actuals(client, m, rows[1:])
    compute(db)
    assert_api_matches(client, m, [replace(rows[0], label=None), *rows[1:]])
    r0 = rows[0]
    with session_scope(db.factory) as session:
        bulk.upsert_actuals(
            session=session,
            model_id=m,
            rows=bulk.ActualRows(
                prediction_ids=[r0.pid],
                labels=[int(r0.label or 0)],
                weights=[r0.weight],
                window_starts=[None],
                ts_us=[r0.ts * 1_000_000],
                pending=[True],
            ),
            received_us=r0.ts * 1_000_000,
        )
    assert db.pending_windows() == 0
    res = compute(db)
    assert (res.swept_windows, res.computed) == (1, 1)
    assert_api_matches(client, m, rows)


def test_iso_helper_round_trips() -> None:
    assert iso(T0) == "2026-11-20T10:00:00Z"
