"""Request body cap, enforced while reading (a client cannot make us buffer 1 GB).

Pure ASGI middleware: a declared Content-Length over the cap is refused before reading;
a chunked body is counted as it streams and refused the moment it passes the cap.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reply(send, 400, "invalid Content-Length header")
                    return
                if declared > self.max_bytes:
                    await _reply(send, 413, self._message())
                    return
        received = 0
        started = False
        refused = False

        async def limited_receive() -> Message:
            # FastAPI turns any exception raised while reading into a 400, so instead of
            # raising we answer 413 ourselves and tell the app the client went away.
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    refused = True
                    if not started:
                        await _reply(send, 413, self._message())
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # we already answered 413; drop the app's reaction to the disconnect
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    def _message(self) -> str:
        return f"request body exceeds {self.max_bytes} bytes; send smaller batches"


async def _reply(send: Send, status: int, detail: Any) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
