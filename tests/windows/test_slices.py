"""Version and segment history (API.md "Metric history" filters): every filtered window
equals the reference computed on the filtered rows, whether it was precomputed (top N
values per window), found in the `other` share and computed on demand, or a
combination computed on demand; the unfiltered windows are unchanged."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.windows import service
from app.windows.service import PassResult
from tests.conftest import Db
from tests.windows.reference import (
    Row,
    assert_api_matches,
    make_rows,
    post_actuals,
    post_predictions,
    register,
    window_of,
)

VERSIONS = ("v1", "v2", "v3")
COUNTRIES = ("DE", "FR", "US", "BR", "JP")
DEVICES = ("ios", "android", "web")
TOP_N = 2


def compute(db: Db, top_n: int = TOP_N) -> PassResult:
    return service.compute_pass(
        factory=db.factory,
        read_factory=db.read_factory,
        settings=db.settings_with(slice_top_n=top_n),
    )


@pytest.fixture
def rows() -> list[Row]:
    rows = make_rows(
        np.random.default_rng(20261124),
        n=600,
        windows=3,
        versions=VERSIONS,
        segments={"country": COUNTRIES, "device": DEVICES},
    )
    # Some predictions carry no segments at all, and one key only.
    return [
        r if i % 17 else Row(r.pid, r.ts, r.score, r.label, r.weight, r.model_version, {})
        for i, r in enumerate(rows)
    ]


def _post(client: TestClient, rows: list[Row]) -> str:
    m = register(client)
    post_predictions(client, m, rows)
    post_actuals(client, m, [r for r in rows if r.label is not None])
    return m


def test_every_single_filter_equals_the_reference(
    client: TestClient, db: Db, rows: list[Row]
) -> None:
    m = _post(client, rows)
    compute(db)
    assert_api_matches(client, m, rows)  # unfiltered windows as before
    for v in VERSIONS:
        assert_api_matches(client, m, [r for r in rows if r.model_version == v], model_version=v)
    for key, values in (("country", COUNTRIES), ("device", DEVICES)):
        for value in values:
            subset = [r for r in rows if r.segments.get(key) == value]
            assert_api_matches(client, m, subset, segment=f"{key}:{value}")
    # Unknown values: no window at all.
    assert_api_matches(client, m, [], segment="country:XX")
    assert_api_matches(client, m, [], model_version="v9")


def test_combinations_are_computed_on_demand(client: TestClient, db: Db, rows: list[Row]) -> None:
    m = _post(client, rows)
    compute(db)
    subset = [
        r
        for r in rows
        if r.model_version == "v2"
        and r.segments.get("country") == "DE"
        and r.segments.get("device") == "web"
    ]
    assert subset
    assert_api_matches(client, m, subset, model_version="v2", segment=["country:DE", "device:web"])


def test_only_top_n_values_per_window_are_stored(
    client: TestClient, db: Db, rows: list[Row]
) -> None:
    _post(client, rows)
    compute(db)
    with db.engine.connect() as conn:
        stored = conn.exec_driver_sql(
            "SELECT kind, key, other, value, window_start, predictions FROM slice_metrics"
        ).all()
    by_dimension: dict[tuple[str, str, int], list[Any]] = {}
    for kind, key, other, value, ws, predictions in stored:
        by_dimension.setdefault((kind, key, ws), []).append((bool(other), value, predictions))
    windows = {window_of(r.ts) for r in rows}
    assert {ws for (_, _, ws) in by_dimension} == windows
    for ws in windows:
        in_window = [r for r in rows if window_of(r.ts) == ws]
        dims = {
            ("version", ""): Counter(r.model_version for r in in_window),
            ("segment", "country"): Counter(
                r.segments["country"] for r in in_window if "country" in r.segments
            ),
            ("segment", "device"): Counter(
                r.segments["device"] for r in in_window if "device" in r.segments
            ),
        }
        for (kind, key), counts in dims.items():
            got = by_dimension[(kind, key, ws)]
            own = {value: n for other, value, n in got if not other}
            # The N largest counts (ties broken by name) have rows of their own ...
            ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            assert own == dict(ranked[:TOP_N])
            # ... and the rest share one `other` row holding exactly their predictions.
            rest = sum(n for _, n in ranked[TOP_N:])
            others = [n for other, _, n in got if other]
            assert others == ([rest] if rest else [])


def test_slices_follow_new_data(client: TestClient, db: Db, rows: list[Row]) -> None:
    """A value that enters the top N later gets its own row; stale rows go away."""
    m = _post(client, rows[:300])
    compute(db)
    post_predictions(client, m, rows[300:])
    post_actuals(client, m, [r for r in rows[300:] if r.label is not None])
    compute(db)
    for value in COUNTRIES:
        subset = [r for r in rows if r.segments.get("country") == value]
        assert_api_matches(client, m, subset, segment=f"country:{value}")
    with db.engine.connect() as conn:
        total = conn.exec_driver_sql(
            "SELECT sum(predictions) FROM slice_metrics WHERE kind = 'version'"
        ).scalar_one()
    assert total == len(rows)  # every prediction in exactly one version slice


def test_high_top_n_stores_every_value(client: TestClient, db: Db, rows: list[Row]) -> None:
    m = _post(client, rows)
    compute(db, top_n=50)
    with db.engine.connect() as conn:
        others = conn.exec_driver_sql("SELECT count(*) FROM slice_metrics WHERE other").scalar()
    assert others == 0
    assert_api_matches(
        client, m, [r for r in rows if r.segments.get("country") == "JP"], segment="country:JP"
    )
