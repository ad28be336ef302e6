"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a
real server: API key form, models table, the model page's charts with the alert
episode, monitors and webhook deliveries. Saves docs/dashboard.png.

No browser is downloaded: without /usr/bin/chromium or the playwright package the test
is skipped. SQLite only, to keep CI short (the dashboard only reads the API).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import jobs
from app.auth import service as auth_service
from app.db import session_scope
from app.notify.signing import generate_secret
from tests.conftest import Db, Server, start_server, stop_server
from tests.notify.conftest import TEST_KEY, webhook_settings
from tests.notify.receiver import Receiver

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "dashboard.png"
HOUR = 3600
GOOD, BAD = 0.8, 0.45  # probability given to the true class, ± jitter
# ctr: 12 hourly windows; the log_loss_above(0.5) monitor, for_windows=2, fires on
# window 5 and resolves on window 7. The last two windows are still partly labeled.
CTR_PLAN = [GOOD, GOOD, GOOD, GOOD, BAD, BAD, BAD, GOOD, GOOD, GOOD, GOOD, GOOD]
CTR_LABELED = {10: 28, 11: 12}
N = 40
TIMEOUT_MS = 15_000


def _browser_or_skip() -> Any:
    if not CHROMIUM.exists():
        pytest.skip("no browser: install Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("no browser: install Debian's chromium and the playwright package")
    return sync_playwright


def _ts(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def post_window(
    http: httpx.Client,
    model_id: str,
    start: int,
    quality: float,
    *,
    seed: int,
    n: int = N,
    labeled: int | None = None,
) -> None:
    """n predictions in the window starting at `start` (about 40% positives), the true
    class getting `quality` ± 0.12; the first `labeled` of them get their actual."""
    rng = random.Random(seed)
    preds, acts = [], []
    for i in range(n):
        y = int(rng.random() < 0.4)
        p_true = min(0.98, max(0.02, quality + rng.uniform(-0.12, 0.12)))
        pid = f"{model_id}-{start}-{i}"
        preds.append(
            {
                "prediction_id": pid,
                "timestamp": _ts(start + i * 60),
                "score": round(p_true if y else 1 - p_true, 4),
            }
        )
        acts.append({"prediction_id": pid, "label": y})
    r = http.post(f"/v1/models/{model_id}/predictions", json={"predictions": preds})
    assert r.status_code == 200, r.text
    take = n if labeled is None else labeled
    if take:
        r = http.post(f"/v1/models/{model_id}/actuals", json={"actuals": acts[:take]})
        assert r.status_code == 200, r.text


@pytest.fixture
def live(db: Db, tmp_path: Path) -> Iterator[Server]:
    server = start_server(
        db.url,
        tmp_path,
        extra_env={"LOSSMON_WEBHOOK_ALLOW_PRIVATE": "true", "LOSSMON_SECRET_KEY": TEST_KEY},
    )
    yield server
    stop_server(server)


def seed(db: Db, server: Server, receiver: Receiver) -> None:
    """Two models with 12 hourly windows ending at the last full hour; ctr has a monitor
    whose alert fired and resolved (both webhooks delivered)."""
    settings = webhook_settings(db)
    first = (int(time.time()) // HOUR - len(CTR_PLAN)) * HOUR
    with httpx.Client(base_url=server.url, timeout=10) as http:
        r = http.put("/v1/models/ctr", json={"window": "1h", "description": "Ad click-through"})
        assert r.status_code == 200, r.text
        r = http.put("/v1/models/fraud", json={"window": "1h", "description": "Card fraud"})
        assert r.status_code == 200, r.text
        r = http.post(
            "/v1/models/ctr/monitors",
            json={
                "name": "ctr-degrading",
                "rule": {"type": "log_loss_above", "threshold": 0.5},
                "min_labeled": 20,
                "for_windows": 2,
                "webhook_url": receiver.url,
                "webhook_secret": generate_secret(),
            },
        )
        assert r.status_code == 201, r.text
        for w, quality in enumerate(CTR_PLAN):
            start = first + w * HOUR
            post_window(http, "ctr", start, quality, seed=w, labeled=CTR_LABELED.get(w))
            post_window(http, "fraud", start, 0.5, seed=100 + w, n=20)
            jobs.tick(settings=settings, factory=db.factory, read_factory=db.read_factory)

        alerts = http.get("/v1/alerts", params={"model_id": "ctr"}).json()["alerts"]
        assert [a["state"] for a in alerts] == ["resolved"]
        detail = http.get(f"/v1/alerts/{alerts[0]['alert_id']}").json()
        assert [(d["event_type"], d["status"]) for d in detail["deliveries"]] == [
            ("alert.firing", "delivered"),
            ("alert.resolved", "delivered"),
        ]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_dashboard_in_a_browser(db: Db, live: Server, receiver: Receiver) -> None:
    sync_playwright = _browser_or_skip()
    from playwright.sync_api import expect

    seed(db, live, receiver)
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)

            def on_console(msg: Any) -> None:
                # The wrong key's 401 is logged by the browser as a failed resource load.
                if msg.type == "error" and "status of 401" not in msg.text:
                    problems.append(f"console: {msg.text}")

            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on("console", on_console)

            # No API key exists yet: the API is open and so is the dashboard.
            page.goto(live.url + "/")
            expect(page.get_by_test_id("model-row")).to_have_count(2)

            # From now on the API wants a key: the key form. A wrong key brings it back.
            with session_scope(db.factory) as session:
                key = auth_service.create_key(
                    session=session, scope="read", name="dashboard", now=datetime.now(UTC)
                ).key
            page.reload()
            expect(page.get_by_test_id("key-form")).to_be_visible()
            page.get_by_test_id("api-key-input").fill("lm_wrong_key")
            page.get_by_test_id("api-key-save").click()
            expect(page.get_by_test_id("key-form")).to_contain_text("did not accept")
            page.get_by_test_id("api-key-input").fill(key)
            page.get_by_test_id("api-key-save").click()

            # Models table: latest labeled window of each model.
            rows = page.get_by_test_id("model-row")
            expect(rows).to_have_count(2)
            ctr = page.locator('[data-testid="model-row"][data-model-id="ctr"]')
            expect(ctr.get_by_test_id("skill")).to_have_class("pill good")
            expect(ctr.get_by_test_id("firing-count")).to_have_text("0")
            assert float(ctr.get_by_test_id("log-loss").inner_text()) < 0.5
            # The newest window (12 of 40 labeled) is not the one the row describes:
            # its coverage is shown beside the latest evaluated window's.
            expect(ctr.get_by_test_id("newest-coverage")).to_contain_text("30% labeled")
            expect(
                page.get_by_role("columnheader", name="Latest evaluated window (UTC)")
            ).to_be_visible()

            # The key is remembered.
            page.reload()
            expect(rows).to_have_count(2)

            # Model page.
            ctr.get_by_role("link", name="ctr").click()
            expect(page).to_have_url(live.url + "/#/models/ctr")
            chart = page.get_by_test_id("logloss-chart")
            expect(chart).to_have_attribute("data-points", str(len(CTR_PLAN)))
            expect(chart.get_by_test_id("logloss-point")).to_have_count(len(CTR_PLAN))
            expect(page.get_by_test_id("coverage-chart")).to_have_attribute(
                "data-points", str(len(CTR_PLAN))
            )
            # Axes say what they show, in which unit and time zone.
            expect(chart.get_by_test_id("x-axis-title")).to_have_text("window (UTC)")
            expect(chart.get_by_test_id("y-axis-title")).to_have_text("log loss (nats)")
            expect(
                page.get_by_test_id("coverage-chart").get_by_test_id("y-axis-title")
            ).to_have_text("labeled (%)")
            # Headline cards: the latest evaluated window (window 10: 28 labeled >= the
            # monitor's min_labeled 20), with the newest window's coverage beside them.
            note = page.get_by_test_id("latest-note")
            expect(note).to_contain_text("latest evaluated window")
            expect(note).to_contain_text("UTC")
            expect(note).to_contain_text("≥ 20 labeled")
            expect(page.locator(".kpis").get_by_test_id("newest-coverage")).to_contain_text("30%")
            episode = chart.get_by_test_id("alert-episode")
            expect(episode).to_have_count(1)
            expect(episode).to_have_attribute("data-state", "resolved")
            # The episode covers the windows the alert was firing in (5 and 6).
            shade = episode.locator("rect.episode").bounding_box()
            assert shade is not None
            points = chart.get_by_test_id("logloss-point")
            centers = []
            for i in range(len(CTR_PLAN)):
                b = points.nth(i).bounding_box()
                assert b is not None
                centers.append(b["x"] + b["width"] / 2)
            left, right = shade["x"], shade["x"] + shade["width"]
            inside = [i for i, x in enumerate(centers) if left < x < right]
            assert inside == [5, 6]
            expect(page.get_by_test_id("monitor-row")).to_have_count(1)
            expect(page.get_by_test_id("rows-kept")).to_contain_text("kept forever")
            alert_row = page.get_by_test_id("alert-row")
            expect(alert_row).to_have_count(1)
            expect(
                alert_row.locator('[data-testid="delivery"][data-status="delivered"]')
            ).to_have_count(2)
            expect(page.locator("#app")).to_have_attribute("data-state", "ready")

            page.mouse.move(0, 0)
            SCREENSHOT.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(SCREENSHOT))

            # Hovering the chart shows that window's numbers.
            chart_box = chart.bounding_box()
            assert chart_box is not None
            page.mouse.move(chart_box["x"] + chart_box["width"] * 0.6, chart_box["y"] + 100)
            expect(page.locator(".tooltip").first).to_contain_text("Log loss")
        finally:
            browser.close()
    assert problems == []


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_single_window_draws_baseline_and_expected_lines(db: Db, live: Server) -> None:
    """With one window there is no neighbour to join: the baseline, expected and loss
    lines are drawn across the window instead of as invisible zero-length paths."""
    sync_playwright = _browser_or_skip()
    from playwright.sync_api import expect

    start = (int(time.time()) // HOUR - 2) * HOUR
    with httpx.Client(base_url=live.url, timeout=10) as http:
        assert http.put("/v1/models/one", json={"window": "1h"}).status_code == 200
        post_window(http, "one", start, GOOD, seed=1)
    settings = webhook_settings(db)
    jobs.tick(settings=settings, factory=db.factory, read_factory=db.read_factory)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(live.url + "/#/models/one")
            chart = page.get_by_test_id("logloss-chart")
            expect(chart).to_have_attribute("data-points", "1")
            plot_width = chart.bounding_box()["width"]  # type: ignore[index]
            for testid in ("line-baseline", "line-expected"):
                line = chart.get_by_test_id(testid)
                expect(line).to_have_count(1)
                box = line.bounding_box()
                assert box is not None and box["width"] > plot_width * 0.8, (testid, box)
            loss = chart.locator("path.line-loss").bounding_box()
            assert loss is not None and loss["width"] > plot_width * 0.8
        finally:
            browser.close()
