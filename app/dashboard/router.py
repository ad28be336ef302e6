"""`GET /`: the dashboard page. Its script and stylesheet are static files under
/dashboard/static (mounted by app.main); everything else it shows comes from the
JSON API, fetched by the browser with the user's API key."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
STATIC_URL = "/dashboard/static"
_TEMPLATE = HERE / "templates" / "index.html"
_ASSETS = ("app.css", "app.js")

# The page loads nothing but its own files and talks to nothing but this origin.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


@lru_cache(maxsize=1)
def render_page() -> str:
    """index.html with asset URLs that change whenever the assets do (cache busting)."""
    digest = hashlib.sha256()
    for name in _ASSETS:
        digest.update((STATIC_DIR / name).read_bytes())
    return (
        _TEMPLATE.read_text(encoding="utf-8")
        .replace("{{static}}", STATIC_URL)
        .replace("{{version}}", digest.hexdigest()[:12])
    )


@router.get("/", response_class=HTMLResponse)
def dashboard() -> HTMLResponse:
    """The dashboard (HTML)."""
    return HTMLResponse(render_page(), headers=_HEADERS)
