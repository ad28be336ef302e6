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
    """The service's own counters and each model's latest window metrics. A plain
    `def`: the scrape-time database reads run in the threadpool."""
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(for_app(request.app).registry), media_type=content_type)
