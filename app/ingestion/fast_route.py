"""POST /v1/models/{model_id}/predictions without FastAPI's per-request machinery.

Serving systems send every prediction through this one route. FastAPI's own work per
request (matching it against every route, solving the dependency graph, the request and
response wrappers) cost ~215 µs of CPU: 28% of a 10-row batch's cost in process (760 ->
540 µs, an in-process ASGI driver with the full middleware stack) and ~9% of a 1,000-row
batch's. This route is matched first and does the same steps itself, in the same order:
the same key check (deps.authorize), the same decoder, the same ingestion
(router.ingest_predictions); errors are raised to the same exception handlers.

What it does not take on itself it hands, body and all, to the FastAPI route, which
stays the definition of the contract (its OpenAPI entry, every 4xx detail): a body the
fast decoder leaves to Pydantic (every invalid one, among others), another content type,
a model id outside its pattern. tests/ingestion/test_fast_route.py sends the same
requests both ways and compares the answers.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Message, Receive, Scope, Send

from app.api.deps import authorize, bearer_token
from app.api.json_body import FastDecoder, fast_decoder
from app.ingestion.router import ingest_predictions, router
from app.ingestion.schemas import PredictionBatch
from app.registry.schemas import MODEL_ID_PATTERN

PATH = f"{router.prefix}/{{model_id}}/predictions"
_MODEL_ID = re.compile(MODEL_ID_PATTERN)
# Set on a request this route handed on, so that routing it again skips this route.
_HANDED_ON = "lossmon.fast_route.handed_on"


def install(app: FastAPI) -> None:
    """Put the route before every other (with no fast decoder, there is nothing to do)."""
    decode = fast_decoder(PredictionBatch)
    if decode is not None:
        app.router.routes.insert(0, FastPredictionsRoute(app, decode))


def _takes_json(content_type: bytes | None) -> bool:
    """application/json (any parameters): FastAPI reads no other body of this route as
    JSON without its media type (strict_content_type, its default, refuses a body sent
    without one); the rare others (+json types) it reads itself."""
    if content_type is None:
        return False
    return content_type.partition(b";")[0].strip().lower() == b"application/json"


class FastPredictionsRoute(Route):
    def __init__(self, app: FastAPI, decode: FastDecoder) -> None:
        super().__init__(PATH, endpoint=self._unused, methods=["POST"], include_in_schema=False)
        self._app = app
        self._decode = decode
        # Requests taken here and handed on (read by tests; plain ints, no lock: the event
        # loop is one thread).
        self.taken = 0
        self.handed_on = 0

    @staticmethod
    def _unused() -> None:  # pragma: no cover - handle() is overridden
        raise AssertionError

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != "POST" or _HANDED_ON in scope:
            return Match.NONE, {}  # any other method: the FastAPI route (and its 405)
        match, child = super().matches(scope)
        if match is Match.FULL:
            child["route"] = self  # the metrics' route label (observability/middleware.py)
        return match, child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        model_id: str = scope["path_params"]["model_id"]
        content_type = authorization = None
        for name, value in scope["headers"]:
            if name == b"content-type" and content_type is None:
                content_type = value
            elif name == b"authorization" and authorization is None:
                authorization = value
        if not (_MODEL_ID.fullmatch(model_id) and _takes_json(content_type)):
            await self._hand_on(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            body = await request.body()
        except ClientDisconnect:
            return  # gone (or refused by the body limit, which answered 413 itself)
        batch = self._decode(body) if body else None
        if not isinstance(batch, PredictionBatch):
            await self._hand_on(scope, _replay(body, receive), send)
            return
        self.taken += 1
        presented = bearer_token(None if authorization is None else authorization.decode("latin-1"))
        await authorize(request, presented, "ingest")
        result = await ingest_predictions(request, model_id, batch)
        await Response(result.model_dump_json(), media_type="application/json")(
            scope, receive, send
        )

    async def _hand_on(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_HANDED_ON] = True
        self.handed_on += 1
        await self._app.router(scope, receive, send)


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` with the body already read put back in front."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed
