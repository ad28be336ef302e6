"""A small, typed, synchronous Python client for the lossmon HTTP API (see API.md).

    from datetime import UTC, datetime
    from app.client import Client

    with Client("http://127.0.0.1:8000", api_key="lm_...") as lm:
        lm.put_model("ctr", task="binary", window="1h")
        lm.log_predictions("ctr", [
            {"prediction_id": "req-1", "timestamp": datetime.now(UTC), "score": 0.8},
        ])
        lm.log_actuals("ctr", [{"prediction_id": "req-1", "label": 1}])
        windows = lm.metrics("ctr", start=datetime(2026, 11, 20, tzinfo=UTC))

Behaviour:

* Timestamps may be given as timezone-aware ``datetime`` objects (sent as RFC 3339).
  A naive datetime, or a NaN/infinite number, is refused with ``ValueError`` before
  anything is sent.
* Predictions and actuals are sent in batches of at most ``max_batch`` items. When the
  server answers 413 (its own cap is lower), the batch is halved and both halves are
  sent; the smaller size is remembered for the rest of this client's life.
* 503, 429, connection errors and timeouts are retried (``retries`` times) with
  exponential backoff and jitter, never sooner than the server's ``Retry-After``. This is
  safe: predictions are idempotent by ``prediction_id`` (a re-sent one is counted as a
  duplicate) and an actual re-sent for the same ``prediction_id`` replaces itself.
  Non-idempotent calls (``create_monitor``) are only retried when the request was
  certainly not processed (503, 429, connection refused).
* 4xx answers raise :class:`LossmonError` subclasses carrying the server's ``detail``;
  for a 422 the item indexes refer to the caller's original sequence, across batches.
* Results (accepted, duplicates, ...) are summed over all batches.
"""

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
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

__all__ = [
    "ActualsResult",
    "AuthError",
    "Client",
    "Conflict",
    "IngestResult",
    "LossmonError",
    "NotFound",
    "RateLimited",
    "Unavailable",
    "ValidationFailed",
]

USER_AGENT = "lossmon-python-client/0.1"


# --------------------------------------------------------------------------- errors


class LossmonError(Exception):
    """Any failed call. ``status_code`` is None when no HTTP answer was received."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        detail: Any = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.detail = detail
        self.request_id = request_id
        self.retry_after = retry_after


class AuthError(LossmonError):
    """401 (missing, unknown or revoked API key) or 403 (the key lacks the scope)."""


class NotFound(LossmonError):
    """404: unknown model, monitor or alert. The message says how to create it."""


class Conflict(LossmonError):
    """409: a conflicting definition (e.g. changing the window of a model with data)."""


class ValidationFailed(LossmonError):
    """422. ``errors`` is the server's list of ``{"index", "field", "message"}``; for
    batch items ``index`` is the position in the sequence *you* passed (across batches).

    Batches are all-or-nothing: the failing batch stored nothing, but the items before
    ``stored_before`` were stored by earlier batches of the same call (re-sending them
    is harmless)."""

    def __init__(
        self,
        message: str,
        *,
        errors: list[dict[str, Any]],
        stored_before: int = 0,
        status_code: int | None = 422,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, detail=errors, request_id=request_id)
        self.errors = errors
        self.stored_before = stored_before


class RateLimited(LossmonError):
    """429 still answered after all retries (or a Retry-After too long to wait for)."""


class Unavailable(LossmonError):
    """503, connection errors or timeouts still failing after all retries. For a 503 the
    server guarantees nothing was stored."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class IngestResult:
    accepted: int = 0
    duplicates: int = 0


@dataclass(frozen=True)
class ActualsResult:
    accepted: int = 0
    matched: int = 0
    pending: int = 0
    expired: int = 0  # past the model's retention_days with no stored prediction: not kept


# --------------------------------------------------------------------------- encoding


def _jsonable(value: Any, where: str) -> Any:
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
        return {str(k): _jsonable(v, f"{where}, field {str(k)!r}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, numbers.Integral):  # numpy integers
        return int(value)
    if isinstance(value, numbers.Real):  # numpy floats
        return _jsonable(float(value), where)
    raise TypeError(f"{where}: cannot send a {type(value).__name__} as JSON")


def _timestamp_param(name: str, value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return str(_jsonable(value, f"parameter {name!r}"))


def _retry_after(response: httpx.Response) -> float | None:
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


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body


def _describe_errors(errors: list[dict[str, Any]], limit: int = 3) -> str:
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

# Retried for every call: the server did not process the request.
_RETRY_STATUSES_SAFE = frozenset({429, 503})
# Also retried for idempotent calls: a proxy in front of lossmon may say these.
_RETRY_STATUSES_IDEMPOTENT = frozenset({429, 502, 503, 504})
# The request may have been processed: retried only for idempotent calls.
_RETRY_TRANSPORT_IDEMPOTENT: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
    httpx.ProxyError,
)
# The request certainly never reached the server.
_RETRY_TRANSPORT_SAFE: tuple[type[Exception], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)


# --------------------------------------------------------------------------- client


class Client:
    """Synchronous lossmon client. Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        max_batch: int = 10_000,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_after_s: float = 120.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.url = url.rstrip("/")
        self.max_batch = max_batch
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        # A Retry-After longer than this is not waited for: the error is raised at once.
        self.max_retry_after_s = max_retry_after_s
        # Lowered (and kept) when the server answers 413 for a batch.
        self._batch_size = max_batch
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    # -- lifecycle

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def batch_size(self) -> int:
        """Items per request: max_batch, or less once the server has answered 413."""
        return self._batch_size

    # -- models and monitors

    def put_model(self, model_id: str, **fields: Any) -> dict[str, Any]:
        """Create or update a model (idempotent), e.g. ``put_model("ctr", window="1h")``."""
        body = _jsonable(fields, "model")
        return self._json(self._request("PUT", f"/v1/models/{_seg(model_id)}", body=body))

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self._json(self._request("GET", f"/v1/models/{_seg(model_id)}"))

    def create_monitor(self, model_id: str, **body: Any) -> dict[str, Any]:
        """Create a monitor; the response holds the webhook secret (shown only here)."""
        payload = _jsonable(body, "monitor")
        response = self._request(
            "POST", f"/v1/models/{_seg(model_id)}/monitors", body=payload, idempotent=False
        )
        return self._json(response)

    def alerts(self, model_id: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Alerts, newest first; ``state`` is "firing" or "resolved"."""
        params = [(k, v) for k, v in (("model_id", model_id), ("state", state)) if v is not None]
        alerts: list[dict[str, Any]] = self._json(
            self._request("GET", "/v1/alerts", params=params)
        )["alerts"]
        return alerts

    def alert(self, alert_id: str) -> dict[str, Any]:
        """One alert with its webhook deliveries."""
        return self._json(self._request("GET", f"/v1/alerts/{_seg(alert_id)}"))

    # -- metrics

    def metrics(
        self,
        model_id: str,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        model_version: str | None = None,
        segments: Mapping[str, str] | Iterable[str] | None = None,
    ) -> list[dict[str, Any]]:
        """Metric windows whose start is in [start, end), oldest first. ``segments`` is a
        mapping ``{"country": "DE"}`` or strings ``"country:DE"`` (all must match)."""
        params: list[tuple[str, str]] = []
        for name, value in (("start", start), ("end", end)):
            text = _timestamp_param(name, value)
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
        windows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:  # every page: the server sends at most `limit` windows per response
            page = params + ([("cursor", cursor)] if cursor else [])
            body = self._json(
                self._request("GET", f"/v1/models/{_seg(model_id)}/metrics", params=page)
            )
            windows.extend(body["windows"])
            cursor = body.get("next_cursor")
            if not cursor:
                return windows

    def compare(
        self,
        model_a: str,
        model_b: str,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        versions: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        """Champion (a) vs challenger (b): log-loss difference b - a per window and
        overall, paired on the prediction ids both scored (GET /v1/compare)."""
        params: list[tuple[str, str]] = [("models", f"{model_a},{model_b}")]
        for name, value in (("start", start), ("end", end)):
            text = _timestamp_param(name, value)
            if text is not None:
                params.append((name, text))
        if versions is not None:
            params.append(("versions", ",".join(versions)))
        result: dict[str, Any] = self._json(self._request("GET", "/v1/compare", params=params))
        return result

    # -- ingestion

    def log_predictions(
        self, model_id: str, predictions: Iterable[Mapping[str, Any]]
    ) -> IngestResult:
        """Send predictions (any number; batched). Re-sent prediction_ids are duplicates."""
        totals = self._ingest(model_id, "predictions", predictions, ("accepted", "duplicates"))
        return IngestResult(**totals)

    def log_actuals(self, model_id: str, actuals: Iterable[Mapping[str, Any]]) -> ActualsResult:
        """Send ground truth (any number; batched). ``matched`` have a stored prediction,
        ``pending`` not yet (they are joined when it arrives)."""
        totals = self._ingest(
            model_id, "actuals", actuals, ("accepted", "matched", "pending", "expired")
        )
        return ActualsResult(**totals)

    def _ingest(
        self,
        model_id: str,
        key: str,
        items: Iterable[Mapping[str, Any]],
        fields: tuple[str, ...],
    ) -> dict[str, int]:
        # Encode everything first: a naive timestamp anywhere fails before anything is sent.
        payload = []
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise TypeError(f"item {i}: expected a dict, got {type(item).__name__}")
            payload.append(_jsonable(item, f"item {i}"))
        totals = dict.fromkeys(fields, 0)
        path = f"/v1/models/{_seg(model_id)}/{key}"
        start = 0
        while start < len(payload):
            size = min(self._batch_size, len(payload) - start)
            response = self._request(
                "POST",
                path,
                body={key: payload[start : start + size]},
                offset=start,
                split_413=True,
            )
            if response.status_code == 413:
                if size == 1:
                    detail = _detail(response)
                    raise LossmonError(
                        f"POST {path}: item {start} alone is too large for the server: {detail}",
                        status_code=413,
                        detail=detail,
                        request_id=response.headers.get("x-request-id"),
                    )
                # The server's cap is lower than ours: halve, retry this part, remember.
                self._batch_size = size // 2
                continue
            body = self._json(response)
            for field in totals:
                totals[field] += int(body.get(field, 0))
            start += size
        return totals

    # -- transport

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        base = min(self.max_backoff_s, self.backoff_s * (2**attempt))
        jittered = base / 2 + random.uniform(0, base / 2)  # "equal jitter"
        return jittered if retry_after is None else max(retry_after, jittered)

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: list[tuple[str, str]] | None = None,
        idempotent: bool = True,
        offset: int = 0,
        split_413: bool = False,
    ) -> httpx.Response:
        """Send with retries. Returns a 2xx response (or a 413 when split_413);
        raises a LossmonError for anything else."""
        headers = {"X-Request-ID": uuid.uuid4().hex}  # the same for every retry
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        retry_statuses = _RETRY_STATUSES_IDEMPOTENT if idempotent else _RETRY_STATUSES_SAFE
        retry_transport = _RETRY_TRANSPORT_IDEMPOTENT if idempotent else _RETRY_TRANSPORT_SAFE
        what = f"{method} {path}"
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    content=content,
                    params=tuple(params) if params else None,
                    headers=headers,
                )
            except retry_transport as exc:
                if attempt >= self.retries:
                    raise Unavailable(
                        f"{what}: {type(exc).__name__}: {exc or 'no answer'} "
                        f"(gave up after {attempt + 1} attempts)",
                        request_id=headers["X-Request-ID"],
                    ) from exc
                time.sleep(self._delay(attempt, None))
                attempt += 1
                continue
            except httpx.TransportError as exc:
                raise LossmonError(
                    f"{what}: {type(exc).__name__}: {exc}", request_id=headers["X-Request-ID"]
                ) from exc
            status = response.status_code
            if status < 400:
                return response
            if status == 413 and split_413:
                return response
            if status in retry_statuses:
                retry_after = _retry_after(response)
                too_long = retry_after is not None and retry_after > self.max_retry_after_s
                if attempt < self.retries and not too_long:
                    time.sleep(self._delay(attempt, retry_after))
                    attempt += 1
                    continue
                raise self._error(response, what, offset, attempts=attempt + 1)
            raise self._error(response, what, offset)

    @staticmethod
    def _error(
        response: httpx.Response, what: str, offset: int, attempts: int | None = None
    ) -> LossmonError:
        status = response.status_code
        detail = _detail(response)
        request_id = response.headers.get("x-request-id")
        if status == 422 and isinstance(detail, list):
            errors = [
                {**e, "index": e["index"] + offset}
                if isinstance(e, dict) and isinstance(e.get("index"), int)
                else e
                for e in detail
            ]
            message = f"{what} -> 422 validation failed: {_describe_errors(errors)}"
            if offset:
                message += (
                    f" (items before {offset} were stored by earlier batches; "
                    "nothing from the failing batch was)"
                )
            return ValidationFailed(
                message, errors=errors, stored_before=offset, request_id=request_id
            )
        text = detail if isinstance(detail, str) else json.dumps(detail)
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
            detail=detail,
            request_id=request_id,
            retry_after=_retry_after(response),
        )

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise LossmonError(
                f"{response.request.method} {response.request.url.path}: "
                f"expected JSON, got {response.text[:200]!r}",
                status_code=response.status_code,
            ) from exc


def _seg(value: str) -> str:
    """One URL path segment."""
    return quote(value, safe="")
