"""One signed POST of an outbox row, and what its result means (no database here)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import httpx
from cryptography.fernet import InvalidToken

from app.config import Settings
from app.notify import secrets as secret_store
from app.notify.backoff import Outcome, classify, retry_after_seconds
from app.notify.formats import with_routing_key
from app.notify.signing import signed_headers
from app.notify.ssrf import UnresolvableWebhookURL, UnsafeWebhookURL, pinned_target

USER_AGENT = "lossmon-webhooks/1"


class Sendable(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def secret_enc(self) -> str | None: ...
    @property
    def format(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AttemptResult:
    outcome: Outcome
    status_code: int | None
    error: str | None
    retry_after_s: float | None = None


def send(
    http: httpx.Client,
    settings: Settings,
    secrets: SecretCache,
    delivery: Sendable,
    now: datetime,
) -> AttemptResult:
    """POST the row's exact body (signed in the standard format; with its routing key
    for PagerDuty); never raises for anything the receiver does."""
    try:
        # Checked again at send time: DNS may have changed since the URL was accepted.
        target = pinned_target(delivery.url, allow_private=settings.webhook_allow_private)
    except UnresolvableWebhookURL as exc:
        return AttemptResult("retry", None, str(exc))  # DNS trouble may be transient
    except UnsafeWebhookURL as exc:
        return AttemptResult("fail", None, f"unsafe webhook URL, not sent: {exc}")
    prepared = _prepare(secrets, delivery, now)
    if isinstance(prepared, AttemptResult):
        return prepared
    headers, body = prepared
    headers["user-agent"] = USER_AGENT
    content = body.encode("utf-8")
    error = "no address to connect to"
    for url, extra_headers, extensions in target.candidates():
        try:
            # The body is never read: only the status and Retry-After matter, and a
            # receiver must not be able to make us buffer a large response.
            with http.stream(
                "POST",
                url,
                content=content,
                headers={**headers, **extra_headers},
                timeout=settings.webhook_timeout_s,
                follow_redirects=False,
                extensions=extensions,
            ) as response:
                code = response.status_code
                retry_after = response.headers.get("retry-after")
        except httpx.ConnectError as exc:
            error = _describe(exc, delivery.url, str(url))
            continue  # the host's next address, as a normal connect would
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return AttemptResult("retry", None, _describe(exc, delivery.url, str(url)))
        outcome = classify(code, None)
        return AttemptResult(
            outcome,
            code,
            _http_error(code, outcome),
            retry_after_seconds(retry_after, now) if outcome == "retry" else None,
        )
    return AttemptResult("retry", None, error)


def _prepare(
    secrets: SecretCache, delivery: Sendable, now: datetime
) -> tuple[dict[str, str], str] | AttemptResult:
    """(headers, body) to send, or the result of an attempt that cannot be made."""
    fmt = delivery.format
    if fmt in ("slack", "alertmanager"):
        return {"content-type": "application/json"}, delivery.body
    what = "PagerDuty routing key" if fmt == "pagerduty" else "signing secret"
    if delivery.secret_enc is None:
        return AttemptResult("fail", None, f"no {what}; refusing to send")
    try:
        secret = secrets.decrypt(delivery.secret_enc)
    except InvalidToken:
        # Retried: the operator may restore the right key before the delivery expires.
        return AttemptResult(
            "retry", None, f"cannot decrypt the {what} (was the secret key changed?)"
        )
    if fmt == "pagerduty":
        return {"content-type": "application/json"}, with_routing_key(delivery.body, secret)
    try:
        return signed_headers(secret, delivery.id, now, delivery.body), delivery.body
    except ValueError as exc:  # an empty secret
        return AttemptResult("fail", None, f"cannot sign: {exc}")


class SecretCache:
    """Decrypted secrets for one pass; the cipher is only loaded if something is sent."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._plain: dict[str, str] = {}

    def decrypt(self, token: str) -> str:
        plain = self._plain.get(token)
        if plain is None:
            cipher = secret_store.load_cipher(self._settings)
            plain = self._plain[token] = secret_store.decrypt(cipher, token)
        return plain


def _http_error(code: int, outcome: Outcome) -> str | None:
    if outcome == "delivered":
        return None
    if outcome == "gone":
        return f"HTTP {code} Gone: the receiver asked us to stop; not retried"
    if outcome == "fail":
        if 300 <= code < 400:
            return f"HTTP {code}: redirects are not followed; not retried"
        return f"HTTP {code}: rejected by the receiver; not retried"
    return f"HTTP {code}"


def _describe(exc: Exception, *urls: str) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    # Webhook URLs often carry a token in the path or query; keep them out of logs.
    for url in urls:
        text = text.replace(url, "<url>")
    return text
