"""The job's side of `lossmon spark compute --url URL --api-key K`: read the run's
parameters from lossmon and upload its window statistics, over HTTP (httpx).

Plain Python, like the server routes it talks to (app/spark/router.py). Every failure
is a RemoteError whose message names the URL: the upload is one request and one
transaction on the server, so it is stored whole or not at all, and an answer other
than 200 means nothing was stored. Only an upload that got no answer at all
(OutcomeUnknown) leaves that open.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from app.metrics.window_stats import WindowSums

# A busy server answers 503 with Retry-After, nothing stored: the upload replaces the
# same windows again, so re-sending it is safe.
_ATTEMPTS = 3
_MAX_RETRY_AFTER_S = 10.0


class RemoteError(RuntimeError):
    """lossmon refused the run, or could not be reached; nothing was stored."""


class OutcomeUnknown(RemoteError):
    """The upload was sent but no answer came: the server may have stored it. Running
    the job again is safe (it replaces the same windows)."""


class Refused(RemoteError):
    """401/403: the key is missing, unknown, revoked or not an admin key."""


class UnknownModel(RemoteError):
    """404: the server has no such model."""


class ModelChanged(RemoteError):
    """409: the model changed on the server while Spark was computing."""


@dataclass(frozen=True)
class Target:
    url: str
    api_key: str | None
    # Generous: the server finalises and stores the whole run in this one request.
    timeout_s: float = 300.0

    def endpoint(self, model_id: str, name: str) -> str:
        return f"{self.url.rstrip('/')}/v1/models/{model_id}/{name}"


def sums_body(sums: WindowSums) -> dict[str, Any]:
    """WindowSums as PUT .../spark-windows takes it (the job supplies exact quantiles,
    never the loss values themselves)."""
    out = sums.to_dict()
    del out["loss_values"], out["loss_weights"]
    return out


def job_parameters(target: Target, model_id: str) -> dict[str, Any]:
    """GET .../spark-job: the model, the pinned slices, top N and the upload limit."""
    return _call(target, "GET", target.endpoint(model_id, "spark-job"), model_id)


def upload(target: Target, model_id: str, body: dict[str, Any], *, limit: int) -> dict[str, Any]:
    """PUT .../spark-windows; refuses before sending a body the server would refuse as
    too large (its limit came with the job's parameters)."""
    try:
        content = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError as exc:  # NaN or infinity: no JSON for it, and no valid window
        raise RemoteError(f"the run produced a non-finite statistic ({exc})") from exc
    if len(content) > limit:
        raise RemoteError(
            f"the run's statistics ({len(body['rows'])} windows and slices, "
            f"{len(content):,} bytes) exceed the upload limit of {target.url} "
            f"({limit:,} bytes, LOSSMON_MAX_BODY_BYTES); run it in parts with "
            "--since/--until, raise the server's limit, or use --database-url"
        )
    return _call(
        target, "PUT", target.endpoint(model_id, "spark-windows"), model_id, content=content
    )


def _call(
    target: Target, method: str, url: str, model_id: str, *, content: bytes | None = None
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if target.api_key is not None:
        headers["Authorization"] = f"Bearer {target.api_key}"
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            response = httpx.request(
                method, url, content=content, headers=headers, timeout=target.timeout_s
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise RemoteError(f"cannot reach lossmon at {target.url}: {exc}") from exc
        except httpx.HTTPError as exc:
            if content is None:
                raise RemoteError(f"no answer from lossmon at {target.url}: {exc}") from exc
            raise OutcomeUnknown(
                f"no answer from lossmon at {target.url} to the upload ({type(exc).__name__}: "
                f"{exc}); it may or may not have been stored: run the job again (a re-run "
                "replaces the same windows)"
            ) from exc
        if response.status_code == 503 and attempt < _ATTEMPTS:
            time.sleep(_retry_after(response))
            continue
        break
    status = response.status_code
    if status < 300:
        data: dict[str, Any] = response.json()
        return data
    detail = _detail(response)
    where = f"{method} {url}"
    if status in (401, 403):
        raise Refused(
            f"{where} refused the API key (HTTP {status}: {detail}); "
            "`lossmon spark compute --url` needs an admin key"
        )
    if status == 404:
        raise UnknownModel(f"unknown model {model_id!r} at {target.url} ({detail})")
    if status == 409:
        raise ModelChanged(f"{where}: {detail}")
    raise RemoteError(f"{where} answered HTTP {status}: {detail}")


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", "1")), _MAX_RETRY_AFTER_S)
    except ValueError:
        return 1.0


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:500] or response.reason_phrase
    return detail if isinstance(detail, str) else json.dumps(detail)[:2000]
