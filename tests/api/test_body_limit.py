"""Body cap through a real uvicorn server: enforced while reading, not after buffering."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from tests.conftest import Db, Server, start_server, stop_server

CAP = 64 * 1024


@pytest.fixture
def small_cap_server(db: Db, tmp_path: Path) -> Iterator[Server]:
    srv = start_server(db.url, tmp_path, extra_env={"LOSSMON_MAX_BODY_BYTES": str(CAP)})
    httpx.put(srv.url + "/v1/models/ctr", json={})
    yield srv
    stop_server(srv)


def _items(n: int) -> list[dict[str, object]]:
    return [{"prediction_id": f"id-{i:08d}", "score": 0.5} for i in range(n)]


def test_declared_content_length_over_cap_is_413(small_cap_server: Server, db: Db) -> None:
    r = httpx.post(
        small_cap_server.url + "/v1/models/ctr/predictions",
        json={"predictions": _items(3000)},  # ~120 KB
    )
    assert r.status_code == 413
    assert str(CAP) in r.json()["detail"]
    assert db.count("predictions") == 0


def test_body_under_cap_is_accepted(small_cap_server: Server, db: Db) -> None:
    r = httpx.post(
        small_cap_server.url + "/v1/models/ctr/predictions", json={"predictions": _items(100)}
    )
    assert r.status_code == 200
    assert db.count("predictions") == 100


def test_chunked_body_is_cut_off_while_streaming(small_cap_server: Server, db: Db) -> None:
    """No Content-Length: the server must answer 413 after ~CAP bytes, long before the
    client has sent everything (it never buffers the whole body)."""
    url = urlparse(small_cap_server.url)
    chunk = b"x" * 8192
    total_chunks = 4096  # 32 MiB offered
    sent = 0
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v1/models/ctr/predictions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        response = b""
        sock.settimeout(0.05)
        try:
            for _ in range(total_chunks):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                try:
                    data = sock.recv(65536)
                    if data:
                        response += data
                        break
                except TimeoutError:
                    pass
        except (BrokenPipeError, ConnectionResetError):
            pass
        sock.settimeout(5)
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in response and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not data:
                break
            response += data
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < 4 * 1024 * 1024, f"server let the client send {sent} bytes before refusing"
    assert db.count("predictions") == 0
