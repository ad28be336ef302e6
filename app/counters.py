"""Ingest counters (rows by result), process-wide.

The ingestion routes call record_predictions / record_actuals after the service returned
(so a batch rejected by validation -- always the whole batch -- is never counted here;
rejected batches are `lossmon_http_requests_total` on the ingest routes with a 4xx status).

The Counter objects are not registered in prometheus_client's global registry: every
app's own registry exposes them through INGEST_COLLECTOR, so several apps in one
process (tests) never collide. They count per process: with `serve --workers N` each
worker reports its own totals (sum them in PromQL).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

PREDICTIONS = Counter(
    "lossmon_ingest_predictions",
    "Prediction rows received by the ingest API, by result "
    "(accepted: stored; duplicate: prediction_id already stored, ignored).",
    ["model", "result"],
    registry=None,
)
ACTUALS = Counter(
    "lossmon_ingest_actuals",
    "Actual rows received by the ingest API, by result "
    "(matched: its prediction is stored; pending: stored, waiting for its prediction; "
    "expired: past the model's retention with no stored prediction, not kept).",
    ["model", "result"],
    registry=None,
)


# Last successful run of each scheduler job (unix seconds), for /metrics and operators;
# and the start and duration of its last run, successful or not (scheduler liveness).
# Kept here, not in app.scheduler, so /metrics does not depend on the scheduler.
last_run_at: dict[str, float] = {}
last_started_at: dict[str, float] = {}
last_duration_s: dict[str, float] = {}


def record_job_run(name: str, at: float) -> None:
    last_run_at[name] = at


def record_job_start(name: str, at: float) -> None:
    last_started_at[name] = at


def record_job_duration(name: str, seconds: float) -> None:
    last_duration_s[name] = seconds


def record_predictions(model_id: str, accepted: int, duplicates: int) -> None:
    if accepted:
        PREDICTIONS.labels(model=model_id, result="accepted").inc(accepted)
    if duplicates:
        PREDICTIONS.labels(model=model_id, result="duplicate").inc(duplicates)


def record_actuals(model_id: str, matched: int, pending: int, expired: int = 0) -> None:
    """Every actual row is matched, pending (both stored) or expired (not kept)."""
    if expired:
        ACTUALS.labels(model=model_id, result="expired").inc(expired)
    if matched:
        ACTUALS.labels(model=model_id, result="matched").inc(matched)
    if pending:
        ACTUALS.labels(model=model_id, result="pending").inc(pending)


class _IngestCollector(Collector):
    """Exposes the process-wide ingest counters in a per-app registry."""

    def collect(self) -> Iterable[Metric]:
        yield from PREDICTIONS.collect()
        yield from ACTUALS.collect()

    def describe(self) -> Iterable[Metric]:
        yield from PREDICTIONS.describe()
        yield from ACTUALS.describe()


INGEST_COLLECTOR = _IngestCollector()
