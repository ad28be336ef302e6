"""GET /metrics (API.md "Operations"): Prometheus text exposition of the service's own
counters and of each model's latest window metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

import inspect
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.exc import OperationalError

from app import counters, jobs
from app.alerting.models import Alert, Monitor
from app.auth import service as auth_service
from app.db import session_scope
from app.ingestion import router as ingestion_router
from app.main import create_app
from app.notify.models import WebhookDelivery
from app.observability.middleware import UNMATCHED
from tests.conftest import Db
from tests.windows.reference import (
    HOUR,
    T0,
    Row,
    api_windows,
    make_rows,
    post_actuals,
    post_predictions,
    register,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

# Prometheus gauge -> field of the window object in GET /v1/models/{id}/metrics
WINDOW_GAUGES = {
    "lossmon_window_log_loss": "log_loss",
    "lossmon_window_baseline_log_loss": "baseline_log_loss",
    "lossmon_window_skill": "skill",
    "lossmon_window_label_coverage": "label_coverage",
    "lossmon_window_expected_log_loss": "expected_log_loss",
    "lossmon_window_calibration_gap": "calibration_gap",
    "lossmon_window_ece": "ece",
    "lossmon_window_predictions": "predictions",
    "lossmon_window_labeled": "labeled",
}


def scrape(client: TestClient, **headers: str) -> Samples:
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            assert key not in out, f"duplicate sample {key}"
            out[key] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


def tick(db: Db) -> None:
    jobs.tick(settings=db.settings, factory=db.factory, read_factory=db.read_factory)


def unique(prefix: str) -> str:
    # The ingest counters are process-wide: a fresh model id per test keeps counts exact.
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def seed_two_models(client: TestClient) -> tuple[str, str]:
    """Model a: three labeled windows, then a newer window with predictions but no
    actuals yet (so its loss fields are None). Model b: two labeled windows."""
    a, b = register(client, unique("obs-a")), register(client, unique("obs-b"))
    rows_a = make_rows(np.random.default_rng(7), n=120, windows=3, prefix="a")
    late = [Row(pid=f"late{i}", ts=T0 + 3 * HOUR + 60 * i, score=0.2 + 0.1 * i) for i in range(4)]
    post_predictions(client, a, [*rows_a, *late])
    post_actuals(client, a, [r for r in rows_a if r.label is not None])
    rows_b = make_rows(np.random.default_rng(8), n=80, windows=2, prefix="b", labeled_frac=1.0)
    post_predictions(client, b, rows_b)
    post_actuals(client, b, rows_b)
    return a, b


# --- model gauges ------------------------------------------------------------------------


def test_latest_window_gauges_equal_the_metric_history(client: TestClient, db: Db) -> None:
    a, b = seed_two_models(client)
    before = scrape(client)
    assert not series(before, "lossmon_window_predictions")  # nothing computed yet
    tick(db)
    samples = scrape(client)
    assert value(samples, "lossmon_scrape_database_success") == 1

    for model, expect_start in ((a, T0 + 3 * HOUR), (b, T0 + HOUR)):
        history = api_windows(client, model)
        latest_start = max(history)
        assert latest_start == expect_start
        latest = history[latest_start]
        assert value(samples, "lossmon_window_start_timestamp_seconds", model=model) == (
            latest_start
        )
        for gauge, field in WINDOW_GAUGES.items():
            got = value(samples, gauge, model=model)
            if latest[field] is None:
                assert got is None, f"{model} {gauge}: None must be left out, got {got}"
            else:
                assert got == latest[field], f"{model} {gauge}: {got} != {latest[field]}"

    # a's latest window has no actuals yet: counts and coverage, no loss.
    assert value(samples, "lossmon_window_predictions", model=a) == 4
    assert value(samples, "lossmon_window_labeled", model=a) == 0
    assert value(samples, "lossmon_window_label_coverage", model=a) == 0
    assert value(samples, "lossmon_window_log_loss", model=a) is None
    assert value(samples, "lossmon_window_expected_log_loss", model=a) is not None
    # b is fully labeled: every gauge present.
    for gauge in WINDOW_GAUGES:
        assert value(samples, gauge, model=b) is not None, gauge
    # Labelled by model only: one series per model and gauge.
    for gauge in (*WINDOW_GAUGES, "lossmon_window_start_timestamp_seconds"):
        for labels in series(samples, gauge):
            assert {k for k, _ in labels} == {"model"}, (gauge, labels)


def test_gauges_follow_new_windows(client: TestClient, db: Db) -> None:
    m = register(client, unique("obs-next"))
    post_predictions(client, m, [Row("p1", T0 + 10, 0.3), Row("p2", T0 + 20, 0.6)])
    tick(db)
    assert value(scrape(client), "lossmon_window_start_timestamp_seconds", model=m) == T0
    post_predictions(client, m, [Row("p3", T0 + 5 * HOUR + 1, 0.9)])
    tick(db)
    samples = scrape(client)
    assert value(samples, "lossmon_window_start_timestamp_seconds", model=m) == T0 + 5 * HOUR
    assert value(samples, "lossmon_window_predictions", model=m) == 1


# --- HTTP request metrics ----------------------------------------------------------------


def test_request_metrics_use_route_templates(client: TestClient, db: Db) -> None:
    a, b = seed_two_models(client)
    assert client.get(f"/v1/models/{a}/metrics").status_code == 200
    assert client.get(f"/v1/models/{b}/metrics").status_code == 200
    assert client.get("/v1/models/no-such-model/metrics").status_code == 404
    assert client.get(f"/nowhere/{a}").status_code == 404
    assert client.get("/healthz").status_code == 200
    samples = scrape(client)

    requests = series(samples, "lossmon_http_requests_total")
    by_labels = {tuple(sorted(labels)): v for labels, v in requests.items()}

    def count(method: str, route: str, status: str) -> float | None:
        key = (("method", method), ("route", route), ("status", status))
        return by_labels.get(key)

    assert count("PUT", "/v1/models/{model_id}", "200") == 2
    assert count("POST", "/v1/models/{model_id}/predictions", "200") == 2
    assert count("POST", "/v1/models/{model_id}/actuals", "200") == 2
    assert count("GET", "/v1/models/{model_id}/metrics", "200") == 2
    assert count("GET", "/v1/models/{model_id}/metrics", "404") == 1
    assert count("GET", UNMATCHED, "404") == 1
    assert count("GET", "/healthz", "200") == 1

    # Never a raw path or id in any HTTP label (bounded cardinality).
    for name in ("lossmon_http_requests_total", "lossmon_http_request_duration_seconds_bucket"):
        for labels in series(samples, name):
            for _, label_value in labels:
                assert a not in label_value and b not in label_value
                assert "no-such-model" not in label_value and "nowhere" not in label_value

    hist = "lossmon_http_request_duration_seconds"
    route = "/v1/models/{model_id}/predictions"
    posted = {"method": "POST", "route": route, "status": "200"}
    assert value(samples, f"{hist}_count", **posted) == 2
    total = value(samples, f"{hist}_sum", **posted)
    assert total is not None and total > 0
    assert value(samples, f"{hist}_bucket", le="+Inf", **posted) == 2


def test_unknown_methods_are_bucketed(client: TestClient) -> None:
    assert client.request("PURGE", "/healthz").status_code == 405
    samples = scrape(client)
    odd = {"method": "other", "route": "/healthz", "status": "405"}
    assert value(samples, "lossmon_http_requests_total", **odd) == 1


def test_non_api_routes_keep_their_template(client: TestClient) -> None:
    assert client.get("/openapi.json").status_code == 200
    samples = scrape(client)
    labels = {"method": "GET", "route": "/openapi.json", "status": "200"}
    assert value(samples, "lossmon_http_requests_total", **labels) == 1
    # the scrape itself is counted by the next scrape
    scraped = {"method": "GET", "route": "/metrics", "status": "200"}
    assert value(scrape(client), "lossmon_http_requests_total", **scraped) == 1


# --- outbox, alerts, scheduler -----------------------------------------------------------


def _alert_with_deliveries(db: Db, model: str, statuses: list[str]) -> None:
    now = datetime.now(UTC)
    monitor_id, alert_id = "mon_" + uuid.uuid4().hex[:12], "alt_" + uuid.uuid4().hex[:12]
    with session_scope(db.factory) as s:
        s.add(
            Monitor(
                id=monitor_id,
                model_id=model,
                name=monitor_id,
                rule={"kind": "test"},
                min_labeled=0,
                for_windows=1,
                webhook_url="https://example.invalid/hook",
                enabled=True,
                state="firing",
                needs_eval=False,
                created_at=now,
                updated_at=now,
            )
        )
        s.flush()
        s.add(
            Alert(
                id=alert_id,
                monitor_id=monitor_id,
                model_id=model,
                state="firing",
                started_at=now,
                window_start=T0,
                window={},
                monitor_snapshot={"id": monitor_id},
            )
        )
        s.flush()
        for status in statuses:
            s.add(
                WebhookDelivery(
                    id="whd_" + uuid.uuid4().hex[:16],
                    alert_id=alert_id,
                    monitor_id=monitor_id,
                    event_type="alert.firing",
                    body="{}",
                    url="https://example.invalid/hook",
                    status=status,
                    attempts=0,
                    next_attempt_us=int(now.timestamp() * 1e6) + 3_600_000_000,
                    created_at=now,
                )
            )


def test_outbox_and_firing_alert_gauges(client: TestClient, db: Db) -> None:
    quiet, loud = register(client, unique("obs-quiet")), register(client, unique("obs-loud"))
    samples = scrape(client)
    assert value(samples, "lossmon_outbox_deliveries", status="pending") == 0
    assert value(samples, "lossmon_outbox_deliveries", status="dead") == 0
    assert value(samples, "lossmon_alerts_firing", model=loud) == 0

    _alert_with_deliveries(db, loud, ["pending", "pending", "dead", "delivered", "cancelled"])
    _alert_with_deliveries(db, loud, ["pending"])
    samples = scrape(client)
    assert series(samples, "lossmon_outbox_deliveries") == {
        frozenset({("status", "pending")}): 3,
        frozenset({("status", "dead")}): 1,
    }
    assert value(samples, "lossmon_alerts_firing", model=loud) == 2
    assert value(samples, "lossmon_alerts_firing", model=quiet) == 0


def test_scheduler_last_run(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(counters, "last_run_at", {})
    assert not series(scrape(client), "lossmon_scheduler_last_success_timestamp_seconds")
    monkeypatch.setitem(counters.last_run_at, "compute", 1795168800.5)
    monkeypatch.setitem(counters.last_run_at, "deliver", 1795168801.25)
    samples = scrape(client)
    name = "lossmon_scheduler_last_success_timestamp_seconds"
    assert value(samples, name, job="compute") == 1795168800.5
    assert value(samples, name, job="deliver") == 1795168801.25


# --- ingest counters ---------------------------------------------------------------------


def test_ingest_counters_are_exposed(client: TestClient) -> None:
    m = unique("obs-ingest")
    counters.record_predictions(m, accepted=5, duplicates=2)
    counters.record_predictions(m, accepted=1, duplicates=0)
    counters.record_actuals(m, matched=3, pending=4)
    samples = scrape(client)
    preds, acts = "lossmon_ingest_predictions_total", "lossmon_ingest_actuals_total"
    assert value(samples, preds, model=m, result="accepted") == 6
    assert value(samples, preds, model=m, result="duplicate") == 2
    assert value(samples, acts, model=m, result="matched") == 3
    assert value(samples, acts, model=m, result="pending") == 4


def _ingestion_router_wired() -> bool:
    source = inspect.getsource(ingestion_router)
    return "record_predictions" in source and "record_actuals" in source


def test_ingest_counters_count_api_batches(client: TestClient) -> None:
    if not _ingestion_router_wired():
        pytest.skip("app/ingestion/router.py does not call app.counters yet")
    m = register(client, unique("obs-api"))
    rows = [Row(f"p{i}", T0 + i, 0.5, label=i % 2) for i in range(6)]
    post_predictions(client, m, rows[:4])
    post_predictions(client, m, rows[2:])  # p2, p3 are duplicates
    post_actuals(client, m, [*rows[4:], Row("ghost", T0, 0.5, label=1)])  # 2 matched, 1 pending
    bad = client.post(f"/v1/models/{m}/actuals", json={"actuals": [{"prediction_id": "x"}]})
    assert bad.status_code == 422  # a rejected batch counts no rows
    samples = scrape(client)
    preds, acts = "lossmon_ingest_predictions_total", "lossmon_ingest_actuals_total"
    assert value(samples, preds, model=m, result="accepted") == 6
    assert value(samples, preds, model=m, result="duplicate") == 2
    assert value(samples, acts, model=m, result="matched") == 2
    assert value(samples, acts, model=m, result="pending") == 1
    rejected = {"method": "POST", "route": "/v1/models/{model_id}/actuals", "status": "422"}
    assert value(samples, "lossmon_http_requests_total", **rejected) == 1


# --- auth, isolation, failure ------------------------------------------------------------


def test_metrics_needs_no_key_when_keys_exist(client: TestClient, db: Db) -> None:
    with session_scope(db.factory) as session:
        auth_service.create_key(session=session, scope="read", name="r", now=datetime.now(UTC))
    assert client.get("/v1/models").status_code == 401  # the API is closed now...
    samples = scrape(client)  # ...but /metrics is not, like /healthz
    assert value(samples, "lossmon_scrape_database_success") == 1
    refused = {"method": "GET", "route": "/v1/models", "status": "401"}
    assert value(samples, "lossmon_http_requests_total", **refused) == 1


def test_each_app_has_its_own_registry(db: Db) -> None:
    with TestClient(create_app(db.settings)) as one, TestClient(create_app(db.settings)) as two:
        for _ in range(3):
            assert one.get("/healthz").status_code == 200
        assert two.get("/healthz").status_code == 200
        ok = {"method": "GET", "route": "/healthz", "status": "200"}
        assert value(scrape(one), "lossmon_http_requests_total", **ok) == 3
        assert value(scrape(two), "lossmon_http_requests_total", **ok) == 1


def test_database_failure_does_not_fail_the_scrape(client: TestClient) -> None:
    def broken() -> Any:
        raise OperationalError("SELECT 1", {}, Exception("database is down"))

    app: Any = client.app
    real = app.state.read_session_factory
    app.state.read_session_factory = broken
    try:
        samples = scrape(client)
    finally:
        app.state.read_session_factory = real
    assert value(samples, "lossmon_scrape_database_success") == 0
    assert not series(samples, "lossmon_outbox_deliveries")
    assert value(scrape(client), "lossmon_scrape_database_success") == 1


def test_openmetrics_on_request(client: TestClient) -> None:
    r = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.rstrip().endswith("# EOF")
