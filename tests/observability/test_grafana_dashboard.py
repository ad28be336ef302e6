"""config/grafana/lossmon.json: a well-formed Grafana dashboard whose queries only use
metrics that GET /metrics really exposes."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app import counters
from tests.conftest import Db
from tests.observability.test_metrics_endpoint import (
    _alert_with_deliveries,
    scrape,
    seed_two_models,
    tick,
)

DASHBOARD = Path(__file__).resolve().parents[2] / "config" / "grafana" / "lossmon.json"
METRIC_RE = re.compile(r"\blossmon_[a-z0-9_]+")


def load() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def exprs(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_is_well_formed() -> None:
    dash = load()
    assert dash["uid"] == "lossmon" and dash["title"]
    assert 36 <= dash["schemaVersion"] <= 41
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    model = variables["model"]
    assert model["type"] == "query"
    assert model["query"]["query"] == "label_values(lossmon_window_log_loss, model)"
    assert model["datasource"]["uid"] == "${datasource}"

    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
            assert target["expr"].count("{") == target["expr"].count("}"), target["expr"]


def test_dashboard_has_the_expected_panels() -> None:
    dash = load()
    used = {m for e in exprs(dash) for m in METRIC_RE.findall(e)}
    for metric in (
        "lossmon_window_log_loss",
        "lossmon_window_baseline_log_loss",
        "lossmon_window_skill",
        "lossmon_window_label_coverage",
        "lossmon_window_expected_log_loss",
        "lossmon_http_requests_total",
        "lossmon_http_request_duration_seconds_bucket",
        "lossmon_outbox_deliveries",
        "lossmon_alerts_firing",
        "lossmon_evaluated_window_log_loss",
        "lossmon_scheduler_last_run_timestamp_seconds",
        "lossmon_scheduler_last_run_duration_seconds",
        "lossmon_compute_backlog_windows",
        "lossmon_outbox_oldest_pending_age_seconds",
    ):
        assert metric in used, metric
    all_exprs = "\n".join(exprs(dash))
    assert "histogram_quantile(0.95" in all_exprs
    # model-level panels follow the model variable
    for e in exprs(dash):
        if "lossmon_window_" in e or "lossmon_evaluated_window_" in e:
            assert 'model=~"$model"' in e, e


def test_dashboard_queries_only_exposed_metrics(
    client: TestClient, db: Db, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = seed_two_models(client)
    tick(db)
    _alert_with_deliveries(db, a, ["pending", "dead"])
    counters.record_predictions(a, accepted=1, duplicates=1)
    counters.record_actuals(a, matched=1, pending=1)
    monkeypatch.setitem(counters.last_run_at, "compute", 1.0)
    monkeypatch.setitem(counters.last_started_at, "compute", 1.0)
    monkeypatch.setitem(counters.last_duration_s, "compute", 0.5)
    exposed = {name for name, _ in scrape(client)}
    used = {m for e in exprs(load()) for m in METRIC_RE.findall(e)}
    assert used, "no lossmon metric in the dashboard"
    assert used <= exposed, f"dashboard queries metrics /metrics does not expose: {used - exposed}"
