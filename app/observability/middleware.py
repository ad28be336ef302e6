"""Pure ASGI middleware: a request counter and a latency histogram labelled by method,
route TEMPLATE (never the raw path: /v1/models/{model_id}/predictions, not
/v1/models/ctr/predictions) and status code.

Hand-written rather than prometheus-fastapi-instrumentator or starlette-exporter: both
default to prometheus_client's process-global registry and name their series and labels
their own way (`http_requests_total{handler=...}` with statuses grouped as 2xx,
`starlette_requests_total{path=...}`), while ours live in the app's own registry (several
apps per process in tests; /metrics shows exactly one app's) under the names the Grafana
dashboard and the example alert rules already use. Adopting either means renaming series
users alert on, to save the ~40 lines below (route template for mounts and unmatched
paths, status 0 for a client that left)."""

from __future__ import annotations

import time

from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.registry import for_app

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    """The template of the route that served the request (FastAPI sets scope["route"]
    for its API routes), else of the first top-level plain route or mount matching it
    (/docs, /openapi.json, static mounts), else "unmatched" (404s, and requests refused
    before routing, e.g. a declared Content-Length over the body limit)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    app = scope.get("app")
    for candidate in getattr(app, "routes", ()):
        if not isinstance(candidate, Route | Mount):
            continue
        match, _ = candidate.matches(scope)
        if match is not Match.NONE:
            template = candidate.path_format
            return template or UNMATCHED
    return UNMATCHED


class PrometheusMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except BaseException:
            if status is None:
                status = 500  # ServerErrorMiddleware (outside us) answers 500
            raise
        finally:
            elapsed = time.perf_counter() - started
            method = str(scope.get("method", "")).upper()
            labels = {
                "method": method if method in _METHODS else "other",
                "route": route_template(scope),
                # 0: the app sent no response (the client went away first)
                "status": str(status or 0),
            }
            app = scope.get("app")
            if app is not None:  # set by Starlette for every request
                obs = for_app(app)
                obs.requests.labels(**labels).inc()
                obs.latency.labels(**labels).observe(elapsed)
