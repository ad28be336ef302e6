"""Everything about talking to lossmon that does not depend on sync or async I/O:
encoding, error mapping, the retry decision and the 413-splitting batch plan. Client and
AsyncClient are thin loops around these, so both behave the same by construction."""

from __future__ import annotations

import json
import math
import numbers
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import httpx

from lossmon._errors import (
    AuthError,
    Conflict,
    LossmonError,
    NotFound,
    RateLimited,
    Unavailable,
    ValidationFailed,
)

USER_AGENT = "lossmon-python-client/0.2"

# --------------------------------------------------------------------------- encoding


def jsonable(value: Any, where: str) -> Any:
    """JSON-ready copy: aware datetimes to RFC 3339; naive ones and non-finite numbers
    raise ValueError naming ``where`` (e.g. "item 12, field 'timestamp'")."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not a finite number")
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{where}: naive datetime {value.isoformat()!r}; lossmon needs timestamps "
                "with a UTC offset, e.g. datetime.now(UTC) or dt.replace(tzinfo=UTC)"
            )
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, f"{where}, field {str(k)!r}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, numbers.Integral):  # numpy integers
        return int(value)
    if isinstance(value, numbers.Real):  # numpy floats
        return jsonable(float(value), where)
    raise TypeError(f"{where}: cannot send a {type(value).__name__} as JSON")


def encode_items(items: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Encode everything first: a naive timestamp anywhere fails before anything is sent."""
    payload = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise TypeError(f"item {i}: expected a dict, got {type(item).__name__}")
        payload.append(jsonable(item, f"item {i}"))
    return payload


def timestamp_param(name: str, value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(jsonable(value, f"parameter {name!r}"))


def seg(value: str) -> str:
    """One URL path segment."""
    return quote(value, safe="")


def dumps(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


@dataclass(frozen=True)
class Prepared:
    """One request as sent on every attempt (same X-Request-ID for all retries)."""

    method: str
    path: str
    headers: dict[str, str]
    content: bytes | None
    params: tuple[tuple[str, str], ...] | None
    idempotent: bool

    @property
    def what(self) -> str:
        return f"{self.method} {self.path}"


def prepare(
    method: str,
    path: str,
    body: Any = None,
    params: list[tuple[str, str]] | None = None,
    idempotent: bool = True,
) -> Prepared:
    headers = {"X-Request-ID": uuid.uuid4().hex}
    content = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        content = dumps(body)
    return Prepared(method, path, headers, content, tuple(params) if params else None, idempotent)


def base_headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


# --------------------------------------------------------------------------- responses


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta or HTTP date), None when absent or unreadable."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body


def describe_errors(errors: list[dict[str, Any]], limit: int = 3) -> str:
    parts = []
    for e in errors[:limit]:
        where = f"item {e['index']}" if isinstance(e.get("index"), int) else "request"
        field = e.get("field")
        parts.append(f"{where}: {field}: {e.get('message')}" if field else f"{where}: {e}")
    if len(errors) > limit:
        parts.append(f"... and {len(errors) - limit} more")
    return "; ".join(parts)


_ERROR_CLASSES: dict[int, type[LossmonError]] = {
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: Conflict,
    429: RateLimited,
    503: Unavailable,
}


def error_for(
    response: httpx.Response, what: str, offset: int = 0, attempts: int | None = None
) -> LossmonError:
    """The typed error for a non-2xx answer; 422 item indexes shifted by ``offset``."""
    status = response.status_code
    info = detail(response)
    request_id = response.headers.get("x-request-id")
    if status == 422 and isinstance(info, list):
        errors = [
            {**e, "index": e["index"] + offset}
            if isinstance(e, dict) and isinstance(e.get("index"), int)
            else e
            for e in info
        ]
        message = f"{what} -> 422 validation failed: {describe_errors(errors)}"
        if offset:
            message += (
                f" (items before {offset} were stored by earlier batches; "
                "nothing from the failing batch was)"
            )
        return ValidationFailed(message, errors=errors, stored_before=offset, request_id=request_id)
    text = info if isinstance(info, str) else json.dumps(info)
    message = f"{what} -> {status}: {text}"
    if attempts is not None and attempts > 1:
        message += f" (gave up after {attempts} attempts)"
    if status >= 500 and status != 503:
        cls: type[LossmonError] = Unavailable if attempts is not None else LossmonError
    else:
        cls = _ERROR_CLASSES.get(status, LossmonError)
    return cls(
        message,
        status_code=status,
        detail=info,
        request_id=request_id,
        retry_after=retry_after(response),
    )


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON object every lossmon endpoint answers with."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise LossmonError(
            f"{response.request.method} {response.request.url.path}: "
            f"expected a JSON object, got {response.text[:200]!r}",
            status_code=response.status_code,
        )
    return body


# --------------------------------------------------------------------------- retries

# Retried for every call: the server did not process the request.
RETRY_STATUSES_SAFE = frozenset({429, 503})
# Also retried for idempotent calls: a proxy in front of lossmon may say these.
RETRY_STATUSES_IDEMPOTENT = frozenset({429, 502, 503, 504})
# The request may have been processed: retried only for idempotent calls.
RETRY_TRANSPORT_IDEMPOTENT: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
# The request certainly never reached the server.
RETRY_TRANSPORT_SAFE: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


def backoff(attempt: int, base_s: float, cap_s: float, retry_after_s: float | None) -> float:
    """Exponential backoff with "equal jitter", never sooner than the server's
    Retry-After. Hand-written (a dozen lines) because the client depends on httpx only."""
    # The exponent is capped: the Logger retries without end while the server is down.
    ceiling = min(cap_s, base_s * 2.0 ** min(attempt, 40))
    jittered = ceiling / 2 + random.uniform(0, ceiling / 2)
    return jittered if retry_after_s is None else max(retry_after_s, jittered)


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    # A Retry-After longer than this is not waited for: the error is raised at once.
    max_retry_wait: float = 120.0

    def after_exception(self, exc: Exception, prepared: Prepared, attempt: int) -> float:
        """Seconds to wait before the next attempt; raises the error to give up."""
        retryable = RETRY_TRANSPORT_IDEMPOTENT if prepared.idempotent else RETRY_TRANSPORT_SAFE
        request_id = prepared.headers["X-Request-ID"]
        if not isinstance(exc, retryable):
            raise LossmonError(
                f"{prepared.what}: {type(exc).__name__}: {exc}", request_id=request_id
            ) from exc
        if attempt >= self.retries:
            raise Unavailable(
                f"{prepared.what}: {type(exc).__name__}: {exc or 'no answer'} "
                f"(gave up after {attempt + 1} attempts)",
                request_id=request_id,
            ) from exc
        return backoff(attempt, self.backoff_s, self.max_backoff_s, None)

    def after_response(
        self, response: httpx.Response, prepared: Prepared, attempt: int, offset: int = 0
    ) -> float:
        """For a non-2xx answer: seconds to wait before retrying, or raises the error."""
        statuses = RETRY_STATUSES_IDEMPOTENT if prepared.idempotent else RETRY_STATUSES_SAFE
        if response.status_code not in statuses:
            raise error_for(response, prepared.what, offset)
        wait = retry_after(response)
        too_long = wait is not None and wait > self.max_retry_wait
        if attempt >= self.retries or too_long:
            raise error_for(response, prepared.what, offset, attempts=attempt + 1)
        return backoff(attempt, self.backoff_s, self.max_backoff_s, wait)


# --------------------------------------------------------------------------- batches


class IngestPlan:
    """Sends ``payload`` in batches of at most ``batch_size``; on a 413 the batch is
    halved and re-sent (the smaller size is what the caller keeps), results summed."""

    def __init__(
        self, model_id: str, key: str, payload: list[Any], fields: tuple[str, ...], batch_size: int
    ) -> None:
        self.path = f"/v1/models/{seg(model_id)}/{key}"
        self.key = key
        self.payload = payload
        self.batch_size = batch_size
        self.totals = dict.fromkeys(fields, 0)
        self.start = 0
        self._size = 0

    def next_batch(self) -> tuple[dict[str, Any], int] | None:
        """The next request body and the offset of its first item, or None when done."""
        if self.start >= len(self.payload):
            return None
        self._size = min(self.batch_size, len(self.payload) - self.start)
        return {self.key: self.payload[self.start : self.start + self._size]}, self.start

    def too_large(self, response: httpx.Response) -> None:
        if self._size == 1:
            info = detail(response)
            raise LossmonError(
                f"POST {self.path}: item {self.start} alone is too large for the server: {info}",
                status_code=413,
                detail=info,
                request_id=response.headers.get("x-request-id"),
            )
        # The server's cap is lower than ours: halve, retry this part, remember.
        self.batch_size = self._size // 2

    def done(self, body: Mapping[str, Any]) -> None:
        for field in self.totals:
            self.totals[field] += int(body.get(field, 0))
        self.start += self._size


def metrics_params(
    start: datetime | str | None,
    end: datetime | str | None,
    model_version: str | None,
    segments: Mapping[str, str] | Iterable[str] | None,
) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = []
    for name, value in (("start", start), ("end", end)):
        text = timestamp_param(name, value)
        if text is not None:
            params.append((name, text))
    if model_version is not None:
        params.append(("model_version", model_version))
    if segments is not None:
        pairs = (
            [f"{k}:{v}" for k, v in segments.items()]
            if isinstance(segments, Mapping)
            else list(segments)
        )
        params.extend(("segment", p) for p in pairs)
    return params


def compare_params(
    model_a: str,
    model_b: str,
    start: datetime | str | None,
    end: datetime | str | None,
    versions: tuple[str, str] | None,
) -> list[tuple[str, str]]:
    params: list[tuple[str, str]] = [("models", f"{model_a},{model_b}")]
    for name, value in (("start", start), ("end", end)):
        text = timestamp_param(name, value)
        if text is not None:
            params.append((name, text))
    if versions is not None:
        params.append(("versions", ",".join(versions)))
    return params


def check_client_args(max_batch: int, retries: int) -> None:
    if max_batch < 1:
        raise ValueError("max_batch must be >= 1")
    if retries < 0:
        raise ValueError("retries must be >= 0")
