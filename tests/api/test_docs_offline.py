"""/docs works with the network off: Swagger UI comes from the package, not a CDN.

Chromium (Debian's, driven by Playwright, as in tests/dashboard) resolves no host but the
server's loopback address, and every request to anything else is recorded and aborted.
The page must render every operation of /openapi.json and ask for nothing outside.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Db, Server, start_server, stop_server
from tests.dashboard.test_dashboard import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, _browser_or_skip

# No DNS at all (every name fails) except loopback: the network is off for the page.
OFFLINE_ARGS = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]


@pytest.fixture
def live(db: Db, tmp_path: Any) -> Iterator[Server]:
    server = start_server(db.url, tmp_path)
    yield server
    stop_server(server)


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_docs_render_every_operation_offline(live: Server) -> None:
    page_path = "/docs"
    sync_playwright = _browser_or_skip()
    from playwright.sync_api import expect

    spec = httpx.get(live.url + "/openapi.json").json()
    operations = [(method.upper(), path) for path, ops in spec["paths"].items() for method in ops]
    outside: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=OFFLINE_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)

            def guard(route: Any) -> None:
                url = route.request.url
                if url.startswith(live.url) or url.startswith("data:") or url.startswith("blob:"):
                    route.continue_()
                else:
                    outside.append(url)
                    route.abort()

            page.route("**/*", guard)
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.goto(live.url + page_path)
            blocks = page.locator(".opblock")
            expect(blocks).to_have_count(len(operations))
            for method, path in operations:
                block = page.locator(f".opblock-{method.lower()}").filter(
                    has=page.locator(f'[data-path="{path}"]')
                )
                expect(block).to_have_count(1)
            # An operation opens with its example filled in.
            put = page.locator(".opblock-put").filter(
                has=page.locator('[data-path="/v1/models/{model_id}"]')
            )
            put.locator(".opblock-summary").first.click()
            expect(put).to_contain_text('"window": "1h"')
        finally:
            browser.close()
    assert outside == [], f"{page_path} asked for outside resources: {outside}"
    assert problems == []


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_no_redoc_page_that_would_call_a_cdn(client: Any) -> None:
    assert client.get("/redoc").status_code == 404
    assert "cdn" not in client.get("/docs").text.lower()
