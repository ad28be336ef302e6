"""GET /metrics: Prometheus text exposition (no auth, like /healthz)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder

from app.observability.registry import for_app

router = APIRouter(tags=["operations"])

_TEXT = {"schema": {"type": "string"}}


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition (OpenMetrics when the scraper asks)",
            "content": {"text/plain": _TEXT, "application/openmetrics-text": _TEXT},
        }
    },
)
def metrics(request: Request) -> Response:
    """Prometheus metrics, no auth: request counts and latencies by route, ingested rows,
    webhook outbox, firing alerts, scheduler health, and each model's latest window
    (`lossmon_window_log_loss`, `_baseline_log_loss`, `_skill`, ...) labelled by model."""
    # A plain `def`: the scrape reads the database, so it runs in the threadpool.
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(for_app(request.app).registry), media_type=content_type)
