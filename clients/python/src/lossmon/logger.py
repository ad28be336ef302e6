"""Logger: fire-and-forget logging of predictions and actuals for serving code.

``log_prediction`` / ``log_actual`` append to a bounded in-memory buffer under a lock
and return (a few microseconds); they never raise and never touch the network. One
background thread per Logger (started on first use, again after a fork) batches the
buffer by size and time and sends the batches with retries. Every logged record ends in
exactly one counter:

    logged = sent + dropped + failed + buffered

* ``sent``: acknowledged by the server (a re-sent prediction counted as a duplicate
  is acknowledged too: predictions are idempotent by ``prediction_id``).
* ``dropped``: refused at the call because the buffer was full (or the Logger closed);
  a rate-limited warning is logged on the ``lossmon`` logger.
* ``failed``: rejected by the server (422 for that record, or 4xx for its batch:
  unknown model, bad key) or not encodable (a naive datetime); reported to
  ``on_rejected`` (default: a rate-limited warning) and never retried.
* ``buffered``: waiting or in flight.

Connection errors, timeouts, 429 and 502/503/504 are retried for as long as the Logger
lives (exponential backoff with jitter, never sooner than ``Retry-After``, waits capped at
``max_retry_wait``): while the server is down records are kept up to ``max_buffer`` and
delivered when it is back. Other 5xx answers are retried ``retries`` times, then failed.

One thread serves both sync and asyncio code: the log calls never block, so coroutines
call them directly; ``await logger.aflush()`` waits without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import httpx

from lossmon import _wire

log = logging.getLogger("lossmon")

WARNING_INTERVAL_S = 10.0


@dataclass(frozen=True)
class Rejected:
    """A record the server refused (or that could not be encoded); never retried."""

    model_id: str
    kind: Literal["prediction", "actual"]
    record: Mapping[str, Any]
    status_code: int | None  # None: refused before sending (encoding)
    message: str


@dataclass(frozen=True)
class LoggerStats:
    logged: int
    sent: int
    dropped: int
    failed: int
    buffered: int


# (batch key "predictions" | "actuals", model_id, item)
_Record = tuple[str, str, dict[str, Any]]
_KIND: dict[str, Literal["prediction", "actual"]] = {
    "predictions": "prediction",
    "actuals": "actual",
}


class _Stopped(Exception):
    """close() gave up waiting: the worker leaves what it holds as buffered."""


class Logger:
    """Non-blocking logging of predictions and actuals (see the module docstring).

    ``batch_size`` records (or whatever is buffered after ``flush_interval`` seconds)
    go in one request. ``close()`` runs at interpreter exit too, waiting at most
    ``exit_timeout`` seconds."""

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        *,
        max_buffer: int = 100_000,
        batch_size: int = 1_000,
        flush_interval: float = 1.0,
        timeout: float = 10.0,
        retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        max_retry_wait: float = 120.0,
        exit_timeout: float = 5.0,
        on_rejected: Callable[[Rejected], None] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if max_buffer < 1 or batch_size < 1:
            raise ValueError("max_buffer and batch_size must be >= 1")
        self.url = url.rstrip("/")
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.exit_timeout = exit_timeout
        self.on_rejected = on_rejected
        self._retries = retries
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._max_retry_wait = max_retry_wait
        self._http_args: dict[str, Any] = {
            "base_url": self.url,
            "headers": _wire.base_headers(api_key),
            "timeout": timeout,
            "transport": transport,
        }
        self._fresh_state()
        _LIVE.add(self)

    def _fresh_state(self) -> None:
        """Everything a forked child must not share with its parent."""
        self._lock = threading.Lock()
        self._resolved = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._abandon = threading.Event()  # close() stopped waiting
        self._buffer: deque[_Record] = deque()
        self._logged = 0
        self._sent = 0
        self._dropped = 0
        self._failed = 0
        self._inflight = 0
        self._flushing = 0
        self._closed = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._last_drop_warning = -WARNING_INTERVAL_S
        self._last_reject_warning = -WARNING_INTERVAL_S
        self._rejected_unreported = 0
        # Lowered (and kept) when the server answers 413.
        self._post_size = self.batch_size
        self._http = httpx.Client(**self._http_args)

    # ------------------------------------------------------------------ the hot path

    def log_prediction(
        self,
        model_id: str,
        prediction_id: str,
        score: float | None = None,
        *,
        probabilities: Mapping[str, float] | None = None,
        timestamp: datetime | str | None = None,
        model_version: str | None = None,
        segments: Mapping[str, str] | None = None,
    ) -> None:
        """Queue one prediction (binary: ``score``; multiclass: ``probabilities``).
        ``timestamp`` defaults to now (the call's time, not the time it is sent)."""
        try:
            item: dict[str, Any] = {
                "prediction_id": prediction_id,
                "timestamp": time.time() if timestamp is None else timestamp,
            }
            if score is not None:
                item["score"] = score
            if probabilities is not None:
                item["probabilities"] = probabilities
            if model_version is not None:
                item["model_version"] = model_version
            if segments is not None:
                item["segments"] = segments
            self._put(("predictions", model_id, item))
        except Exception:  # never into the caller: a bug here must not break serving
            log.exception("lossmon: log_prediction failed")

    def log_actual(
        self,
        model_id: str,
        prediction_id: str,
        label: int | bool | str,
        *,
        timestamp: datetime | str | None = None,
        weight: float | None = None,
    ) -> None:
        """Queue one actual (ground truth) for a prediction id."""
        try:
            item: dict[str, Any] = {"prediction_id": prediction_id, "label": label}
            if timestamp is not None:
                item["timestamp"] = timestamp
            if weight is not None:
                item["weight"] = weight
            self._put(("actuals", model_id, item))
        except Exception:
            log.exception("lossmon: log_actual failed")

    def _put(self, record: _Record) -> None:
        warn = 0
        wake = False
        with self._lock:
            self._logged += 1
            if self._closed or len(self._buffer) + self._inflight >= self.max_buffer:
                self._dropped += 1
                now = time.monotonic()
                if now - self._last_drop_warning >= WARNING_INTERVAL_S:
                    self._last_drop_warning = now
                    warn = self._dropped
            else:
                self._buffer.append(record)
                if self._thread is None:
                    self._start_worker()
                wake = len(self._buffer) == self.batch_size
        if wake:
            self._wake.set()
        if warn:
            log.warning(
                "lossmon: dropped records (%d so far): %s",
                warn,
                "the logger is closed"
                if self._closed
                else f"buffer full ({self.max_buffer} records waiting for {self.url})",
            )

    def _start_worker(self) -> None:
        # Daemon: atexit (which runs after non-daemon threads are joined) flushes it.
        self._thread = threading.Thread(target=self._run, name="lossmon-logger", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ counters

    def stats(self) -> LoggerStats:
        """A consistent snapshot: logged == sent + dropped + failed + buffered."""
        with self._lock:
            return LoggerStats(
                logged=self._logged,
                sent=self._sent,
                dropped=self._dropped,
                failed=self._failed,
                buffered=len(self._buffer) + self._inflight,
            )

    @property
    def logged(self) -> int:
        return self._logged

    @property
    def sent(self) -> int:
        return self._sent

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def failed(self) -> int:
        return self._failed

    @property
    def buffered(self) -> int:
        return self.stats().buffered

    # ------------------------------------------------------------------ flush / close

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Send what was logged before this call now; wait until it is sent or failed
        (True) or ``timeout`` seconds pass (False). Never raises."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            # The worker drains first in, first out and settles each chunk before taking
            # the next, so "settled >= what was queued before now" means ours are done.
            target = self._logged - self._dropped
            if self._sent + self._failed >= target:
                return True
            if self._thread is None or not self._thread.is_alive():
                if self._stopping:
                    return False
                self._start_worker()
            self._flushing += 1
            self._wake.set()
            try:
                while self._sent + self._failed < target:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    self._resolved.wait(left)
                return True
            finally:
                self._flushing -= 1

    async def aflush(self, timeout: float | None = 10.0) -> bool:
        """:meth:`flush` without blocking the event loop."""
        return await asyncio.to_thread(self.flush, timeout)

    def close(self, timeout: float | None = 10.0) -> bool:
        """Refuse new records (counted as dropped), deliver what is buffered within
        ``timeout`` seconds, stop the worker. True when nothing was left buffered."""
        with self._lock:
            self._closed = True
        delivered = self.flush(timeout)
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if not delivered:
            self._abandon.set()
        if thread is not None:
            thread.join(timeout=1.0 if delivered else 0.1)
        if thread is None or not thread.is_alive():
            self._http.close()
        _LIVE.discard(self)
        return delivered

    def __enter__(self) -> Logger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ the worker

    def _run(self) -> None:
        try:
            while True:
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                while chunk := self._take():
                    self._deliver(chunk)
                    with self._lock:
                        more = len(self._buffer) >= self.batch_size
                        if not (more or self._flushing or self._stopping):
                            break
                with self._lock:
                    if self._stopping and not self._buffer:
                        return
        except _Stopped:
            return
        except Exception:  # a bug must not kill serving; say it loudly
            log.exception("lossmon: the logger's worker stopped")

    def _take(self) -> list[_Record]:
        with self._lock:
            n = min(len(self._buffer), self.batch_size)
            chunk = [self._buffer.popleft() for _ in range(n)]
            self._inflight += n
            return chunk

    def _settle(self, *, sent: int = 0, failed: int = 0) -> None:
        with self._lock:
            self._sent += sent
            self._failed += failed
            self._inflight -= sent + failed
            self._resolved.notify_all()

    def _deliver(self, chunk: list[_Record]) -> None:
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for key, model_id, item in chunk:
            groups.setdefault((key, model_id), []).append(item)
        for (key, model_id), items in groups.items():
            encoded: list[Any] = []
            for item in items:
                try:
                    encoded.append(_wire.jsonable(_with_timestamp(item), "record"))
                except (TypeError, ValueError) as exc:
                    self._reject([Rejected(model_id, _KIND[key], item, None, str(exc))])
            self._send(key, model_id, encoded)

    def _send(self, key: str, model_id: str, items: list[Any]) -> None:
        path = f"/v1/models/{_wire.seg(model_id)}/{key}"
        kind = _KIND[key]
        while items:
            part = items[: self._post_size]
            response = self._post(path, key, part)
            status = response.status_code
            if status < 300:
                self._settle(sent=len(part))
                items = items[len(part) :]
            elif status == 413 and len(part) > 1:
                self._post_size = max(1, len(part) // 2)
            elif status == 422 and _indexed(_wire.detail(response), len(part)):
                # All-or-nothing batch: report the bad records, re-send the others.
                bad: dict[int, str] = {}
                for e in _wire.detail(response):
                    if isinstance(e, dict) and isinstance(e.get("index"), int):
                        bad.setdefault(e["index"], f"{e.get('field')}: {e.get('message')}")
                self._reject([Rejected(model_id, kind, part[i], 422, m) for i, m in bad.items()])
                rest = [r for i, r in enumerate(part) if i not in bad]
                items = rest + items[len(part) :]
            else:
                message = str(_wire.error_for(response, f"POST {path}"))
                self._reject([Rejected(model_id, kind, r, status, message) for r in part])
                items = items[len(part) :]

    def _post(self, path: str, key: str, part: list[Any]) -> httpx.Response:
        """POST until an answer that is not worth retrying (or _Stopped)."""
        content = _wire.dumps({key: part})
        headers = {"Content-Type": "application/json"}
        attempt = 0
        server_errors = 0
        while True:
            retry_after: float | None = None
            try:
                response = self._http.post(path, content=content, headers=headers)
            except httpx.TransportError:
                pass  # down or unreachable: keep the records, retry for as long as we live
            else:
                status = response.status_code
                if status in _wire.RETRY_STATUSES_IDEMPOTENT:
                    retry_after = _wire.retry_after(response)
                elif status >= 500 and server_errors < self._retries:
                    server_errors += 1
                else:
                    return response
            delay = _wire.backoff(attempt, self._backoff_s, self._max_backoff_s, retry_after)
            attempt += 1
            if self._abandon.wait(min(delay, self._max_retry_wait)):
                raise _Stopped

    def _reject(self, rejected: list[Rejected]) -> None:
        if not rejected:
            return
        self._settle(failed=len(rejected))
        if self.on_rejected is not None:
            for r in rejected:
                try:
                    self.on_rejected(r)
                except Exception:
                    log.exception("lossmon: on_rejected raised")
            return
        self._rejected_unreported += len(rejected)
        now = time.monotonic()
        if now - self._last_reject_warning >= WARNING_INTERVAL_S:
            self._last_reject_warning = now
            first = rejected[0]
            log.warning(
                "lossmon: %d records rejected (not retried), e.g. %s %r for model %r: %s",
                self._rejected_unreported,
                first.kind,
                first.record.get("prediction_id"),
                first.model_id,
                first.message,
            )
            self._rejected_unreported = 0

    def _after_fork_in_child(self) -> None:
        # The parent keeps (and sends) what it buffered; the child starts empty with its
        # own lock (the parent's may have been held at fork time), connections and thread.
        self._fresh_state()


def _with_timestamp(item: dict[str, Any]) -> dict[str, Any]:
    ts = item.get("timestamp")
    if isinstance(ts, float):
        return {**item, "timestamp": datetime.fromtimestamp(ts, UTC)}
    return item


def _indexed(info: Any, size: int) -> bool:
    """A 422 detail that names items of the batch by index (else the batch fails)."""
    return (
        isinstance(info, list)
        and bool(info)
        and all(
            isinstance(e, dict) and isinstance(e.get("index"), int) and 0 <= e["index"] < size
            for e in info
        )
    )


_LIVE: weakref.WeakSet[Logger] = weakref.WeakSet()


def _reset_in_child() -> None:
    for logger in list(_LIVE):
        logger._after_fork_in_child()


def _close_at_exit() -> None:
    for logger in list(_LIVE):
        logger.close(logger.exit_timeout)


os.register_at_fork(after_in_child=_reset_in_child)
atexit.register(_close_at_exit)
