"""The synchronous client: every endpoint, batching with 413 split, retries."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import TracebackType
from typing import Any

import httpx

from lossmon import _wire
from lossmon._errors import ActualsResult, IngestResult


class Client:
    """Synchronous lossmon client. Use as a context manager or call :meth:`close`.

    * Items are sent in batches of at most ``max_batch``; on a 413 the batch is halved
      and the smaller size kept for the rest of this client's life.
    * 503, 429, connection errors and timeouts are retried ``retries`` times with
      exponential backoff and jitter, never sooner than ``Retry-After``; a Retry-After
      longer than ``max_retry_wait`` seconds is not waited for (the error is raised).
      Non-idempotent calls (``create_monitor``) are retried only when the request was
      certainly not processed.
    * 4xx answers raise :class:`LossmonError` subclasses carrying the server's detail.
    """

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
        max_retry_wait: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        _wire.check_client_args(max_batch, retries)
        self.url = url.rstrip("/")
        self.max_batch = max_batch
        self.policy = _wire.RetryPolicy(retries, backoff_s, max_backoff_s, max_retry_wait)
        self._batch_size = max_batch
        self._http = httpx.Client(
            base_url=self.url,
            headers=_wire.base_headers(api_key),
            timeout=timeout,
            transport=transport,
        )

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

    @property
    def retries(self) -> int:
        return self.policy.retries

    # -- models and monitors

    def put_model(self, model_id: str, **fields: Any) -> dict[str, Any]:
        """Create or update a model (idempotent), e.g. ``put_model("ctr", window="1h")``."""
        body = _wire.jsonable(fields, "model")
        return self._call("PUT", f"/v1/models/{_wire.seg(model_id)}", body=body)

    def get_model(self, model_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/models/{_wire.seg(model_id)}")

    def create_monitor(self, model_id: str, **body: Any) -> dict[str, Any]:
        """Create a monitor; the response holds the webhook secret (shown only here)."""
        payload = _wire.jsonable(body, "monitor")
        path = f"/v1/models/{_wire.seg(model_id)}/monitors"
        return self._call("POST", path, body=payload, idempotent=False)

    def alerts(self, model_id: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        """Alerts, newest first; ``state`` is "firing" or "resolved"."""
        params = [(k, v) for k, v in (("model_id", model_id), ("state", state)) if v is not None]
        alerts: list[dict[str, Any]] = self._call("GET", "/v1/alerts", params=params)["alerts"]
        return alerts

    def alert(self, alert_id: str) -> dict[str, Any]:
        """One alert with its webhook deliveries."""
        return self._call("GET", f"/v1/alerts/{_wire.seg(alert_id)}")

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
        params = _wire.metrics_params(start, end, model_version, segments)
        path = f"/v1/models/{_wire.seg(model_id)}/metrics"
        windows: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:  # every page: the server sends at most `limit` windows per response
            page = params + ([("cursor", cursor)] if cursor else [])
            body = self._call("GET", path, params=page)
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
        params = _wire.compare_params(model_a, model_b, start, end, versions)
        return self._call("GET", "/v1/compare", params=params)

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
        plan = _wire.IngestPlan(model_id, key, _wire.encode_items(items), fields, self._batch_size)
        while (batch := plan.next_batch()) is not None:
            body, offset = batch
            prepared = _wire.prepare("POST", plan.path, body)
            response = self._send(prepared, offset=offset, split_413=True)
            if response.status_code == 413:
                plan.too_large(response)
                self._batch_size = plan.batch_size
                continue
            plan.done(_wire.json_body(response))
        return plan.totals

    # -- transport

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: list[tuple[str, str]] | None = None,
        idempotent: bool = True,
    ) -> dict[str, Any]:
        prepared = _wire.prepare(method, path, body, params, idempotent)
        return _wire.json_body(self._send(prepared))

    def _send(
        self, prepared: _wire.Prepared, *, offset: int = 0, split_413: bool = False
    ) -> httpx.Response:
        """Send with retries. Returns a 2xx response (or a 413 when split_413);
        raises a LossmonError for anything else."""
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    prepared.method,
                    prepared.path,
                    content=prepared.content,
                    params=prepared.params,
                    headers=prepared.headers,
                )
            except httpx.TransportError as exc:
                time.sleep(self.policy.after_exception(exc, prepared, attempt))
                attempt += 1
                continue
            if response.status_code < 400 or (response.status_code == 413 and split_413):
                return response
            time.sleep(self.policy.after_response(response, prepared, attempt, offset))
            attempt += 1
