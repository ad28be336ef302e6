"""A real HTTP proxy on loopback in front of a real lossmon server, for client tests.

It records every request (method, path, number of batch items, what it answered, when)
and follows a script: a status code answers that status itself (with Retry-After: 0)
without forwarding, as does ``(status, seconds)`` with that Retry-After; "drop" forwards
the request (so the server stores it) and then closes the connection without answering,
as a lost response would. Anything else is forwarded.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx

Action = int | tuple[int, float] | Literal["drop"]
HOP_HEADERS = {"host", "content-length", "connection", "keep-alive", "transfer-encoding"}


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    items: int | None  # len(predictions|actuals) of a batch body
    answered: int | str  # status sent back, or "dropped"
    at: float = field(default_factory=time.monotonic)  # when the request arrived


class Proxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[Seen] = []
        self._script: list[Action] = []
        self._lock = threading.Lock()
        self._http = httpx.Client(base_url=self.upstream, timeout=30)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *actions: Action) -> None:
        with self._lock:
            self._script.extend(actions)

    def batches(self, kind: str) -> list[Seen]:
        """The POSTs of predictions or actuals, in order."""
        return [s for s in self.seen if s.method == "POST" and s.path.endswith("/" + kind)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self._http.close()

    def _next(self) -> Action | None:
        with self._lock:
            return self._script.pop(0) if self._script else None

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)


def _items(body: bytes) -> int | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict):
        for key in ("predictions", "actuals"):
            if isinstance(data.get(key), list):
                return len(data[key])
    return None


def _handler_for(proxy: Proxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            action = proxy._next()
            items = _items(body)
            if isinstance(action, int | tuple):
                status, retry_after = action if isinstance(action, tuple) else (action, 0.0)
                proxy._record(Seen(self.command, self.path, items, status))
                payload = json.dumps({"detail": "proxy says no"}).encode()
                self.send_response(status)
                self.send_header("Retry-After", f"{retry_after:g}")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
            upstream = proxy._http.request(self.command, self.path, content=body, headers=headers)
            if action == "drop":
                proxy._record(Seen(self.command, self.path, items, "dropped"))
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(2)
                return
            proxy._record(Seen(self.command, self.path, items, upstream.status_code))
            self.send_response(upstream.status_code)
            for name, value in upstream.headers.items():
                if name.lower() not in HOP_HEADERS | {"content-encoding", "date", "server"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(upstream.content)))
            self.end_headers()
            self.wfile.write(upstream.content)

        do_GET = _handle
        do_POST = _handle
        do_PUT = _handle
        do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler
