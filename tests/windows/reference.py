"""An independent, deliberately plain numpy reference for the window metrics of
API.md "Metric history", plus helpers to generate, post and compare random data.

Nothing here imports app.metrics: the expectations must not share code with the
implementation they check.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

EPS = 1e-15
HOUR = 3600
T0 = 1795168800  # 2026-11-20T10:00:00Z, an hour boundary

INT_FIELDS = ("predictions", "labeled")
FLOAT_FIELDS = (
    "label_coverage",
    "weight_sum",
    "positive_rate",
    "log_loss",
    "baseline_log_loss",
    "skill",
    "log_loss_stderr",
    "log_loss_median",
    "log_loss_p90",
    "log_loss_p99",
    "expected_log_loss",
    "accuracy",
    "ece",
    "calibration_gap",
)
METRIC_FIELDS = INT_FIELDS + FLOAT_FIELDS


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Row:
    pid: str
    ts: int  # epoch seconds
    score: float
    label: int | None = None  # None: no actual (yet)
    weight: float = 1.0
    model_version: str = ""
    segments: dict[str, str] = field(default_factory=dict)

    def prediction(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prediction_id": self.pid,
            "timestamp": iso(self.ts),
            "score": self.score,
        }
        if self.model_version:
            body["model_version"] = self.model_version
        if self.segments:
            body["segments"] = dict(self.segments)
        return body

    def actual(self) -> dict[str, Any]:
        assert self.label is not None
        return {"prediction_id": self.pid, "label": self.label, "weight": self.weight}


def make_rows(
    rng: np.random.Generator,
    *,
    n: int,
    windows: int,
    t0: int = T0,
    window_s: int = HOUR,
    labeled_frac: float = 0.85,
    prefix: str = "p",
    versions: Sequence[str] = ("",),
    segments: dict[str, Sequence[str]] | None = None,
) -> list[Row]:
    """Random rows spread over `windows` consecutive windows (each gets at least one),
    with random labels, random weights and a few extreme scores (0 and 1) so that the
    clipping matters."""
    rows = []
    for i in range(n):
        w_idx = i % windows if i < windows else int(rng.integers(windows))
        ts = t0 + w_idx * window_s + int(rng.integers(window_s))
        score = float(rng.random())
        if rng.random() < 0.03:
            score = float(rng.integers(2))  # exactly 0.0 or 1.0
        # labels loosely follow the score, so the model has some skill
        label: int | None = int(rng.random() < 0.15 + 0.7 * score)
        if rng.random() > labeled_frac:
            label = None
        weight = float(np.round(rng.uniform(0.1, 3.0), 6)) if rng.random() < 0.7 else 1.0
        segs = {k: str(vals[int(rng.integers(len(vals)))]) for k, vals in (segments or {}).items()}
        rows.append(
            Row(
                pid=f"{prefix}{i:05d}",
                ts=ts,
                score=score,
                label=label,
                weight=weight,
                model_version=str(versions[int(rng.integers(len(versions)))]),
                segments=segs,
            )
        )
    return rows


def window_of(ts: int, window_s: int = HOUR) -> int:
    return ts // window_s * window_s


def _quantile(losses: np.ndarray, w: np.ndarray, q: float) -> float:
    """Smallest loss whose cumulative weight (sorted by loss) reaches q * sum(w)."""
    pairs = sorted(zip(losses.tolist(), w.tolist(), strict=True))
    total = sum(wi for _, wi in pairs)
    cum = 0.0
    for value, wi in pairs:
        cum += wi
        if cum >= q * total * (1 - 1e-12):
            return value
    return pairs[-1][0]


def reference_ece(
    predicted: Sequence[float], outcome: Sequence[float], w: Sequence[float]
) -> float:
    """Expected calibration error over 10 equal-width bins, row by row."""
    sums: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for p, y, wi in zip(predicted, outcome, w, strict=True):
        b = min(math.floor(p * 10), 9)
        sums[b][0] += wi
        sums[b][1] += wi * p
        sums[b][2] += wi * y
    total = sum(v[0] for v in sums.values())
    return sum(v[0] / total * abs(v[1] / v[0] - v[2] / v[0]) for v in sums.values())


def reference_metrics(
    scores: Sequence[float],
    labels: Sequence[float | None],
    weights: Sequence[float],
    eps: float = EPS,
) -> dict[str, Any]:
    """Metrics of one window; labels None = no actual."""
    p_all = np.clip(np.asarray(scores, dtype=np.float64), eps, 1 - eps)
    predictions = len(p_all)
    entropy = -(p_all * np.log(p_all) + (1 - p_all) * np.log(1 - p_all))
    out: dict[str, Any] = {
        "predictions": predictions,
        "expected_log_loss": float(np.mean(entropy)),
    }
    mask = np.array([lab is not None for lab in labels], dtype=bool)
    n = int(mask.sum())
    out["labeled"] = n
    out["label_coverage"] = n / predictions
    if n == 0:
        out["weight_sum"] = 0.0
        for k in FLOAT_FIELDS:
            out.setdefault(k, None)
        return out
    y = np.array([float(lab) for lab in labels if lab is not None])
    w = np.asarray(weights, dtype=np.float64)[mask]
    p = p_all[mask]
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    total = w.sum()
    loss = float(np.sum(w * losses) / total)
    q = float(np.sum(w * y) / total)
    base = 0.0 if q in (0.0, 1.0) else -(q * math.log(q) + (1 - q) * math.log(1 - q))
    out.update(
        weight_sum=float(total),
        positive_rate=q,
        log_loss=loss,
        baseline_log_loss=base,
        skill=None if base == 0.0 else 1 - loss / base,
        log_loss_stderr=(
            None
            if n < 2
            else math.sqrt(n / (n - 1) * float(np.sum(w**2 * (losses - loss) ** 2))) / total
        ),
        log_loss_median=_quantile(losses, w, 0.5),
        log_loss_p90=_quantile(losses, w, 0.9),
        log_loss_p99=_quantile(losses, w, 0.99),
        accuracy=float(np.sum(w * ((p >= 0.5) == (y == 1.0))) / total),
        ece=reference_ece(
            np.asarray(scores, dtype=np.float64)[mask].tolist(), y.tolist(), w.tolist()
        ),
        calibration_gap=loss - out["expected_log_loss"],
    )
    return out


def reference_windows(rows: Iterable[Row], window_s: int = HOUR) -> dict[int, dict[str, Any]]:
    """window start (epoch s) -> reference metrics over the given rows."""
    by_window: dict[int, list[Row]] = defaultdict(list)
    for r in rows:
        by_window[window_of(r.ts, window_s)].append(r)
    return {
        ws: reference_metrics([r.score for r in rs], [r.label for r in rs], [r.weight for r in rs])
        for ws, rs in sorted(by_window.items())
    }


def assert_metrics_equal(actual: dict[str, Any], expected: dict[str, Any], where: str = "") -> None:
    for k in INT_FIELDS:
        assert actual[k] == expected[k], f"{where} {k}: {actual[k]} != {expected[k]}"
    for k in FLOAT_FIELDS:
        if expected[k] is None:
            assert actual[k] is None, f"{where} {k}: {actual[k]} != None"
        else:
            assert actual[k] is not None, f"{where} {k}: None != {expected[k]}"
            assert actual[k] == pytest.approx(expected[k], rel=1e-9, abs=1e-12), f"{where} {k}"


def api_windows(client: TestClient, model: str, **params: Any) -> dict[int, dict[str, Any]]:
    """GET the metric history -> window start (epoch s) -> window object."""
    r = client.get(f"/v1/models/{model}/metrics", params=params)
    assert r.status_code == 200, r.text
    out = {}
    for w in r.json()["windows"]:
        start = datetime.fromisoformat(w["start"].replace("Z", "+00:00"))
        out[int(start.timestamp())] = w
    return out


def assert_api_matches(
    client: TestClient, model: str, rows: Iterable[Row], **params: Any
) -> dict[int, dict[str, Any]]:
    """The history endpoint reports exactly the reference windows of `rows`."""
    expected = reference_windows(rows)
    got = api_windows(client, model, **params)
    assert sorted(got) == sorted(expected)
    for ws, exp in expected.items():
        assert_metrics_equal(got[ws], exp, where=iso(ws))
        end = datetime.fromisoformat(got[ws]["end"].replace("Z", "+00:00"))
        assert int(end.timestamp()) == ws + HOUR
    return got


# A 503 means "not stored, retry after Retry-After" (API.md "Time bounds and faults"):
# against a live server whose own compute pass holds SQLite's single write lock past the
# lock timeout on a loaded machine, a real client retries, and so do these helpers. Any
# other status fails the test at once, and so does a 503 that persists.
RETRIES_ON_503 = 5


def _post(client: TestClient, url: str, body: dict[str, Any]) -> dict[str, int]:
    for _ in range(RETRIES_ON_503):
        r = client.post(url, json=body)
        if r.status_code != 503:
            break
        time.sleep(min(float(r.headers.get("Retry-After", "1")), 2.0))
    assert r.status_code == 200, r.text
    out: dict[str, int] = r.json()
    return out


def post_predictions(client: TestClient, model: str, rows: Sequence[Row]) -> dict[str, int]:
    return _post(
        client,
        f"/v1/models/{model}/predictions",
        {"predictions": [x.prediction() for x in rows]},
    )


def post_actuals(client: TestClient, model: str, rows: Sequence[Row]) -> dict[str, int]:
    return _post(client, f"/v1/models/{model}/actuals", {"actuals": [x.actual() for x in rows]})


def without_labels(rows: Iterable[Row]) -> list[Row]:
    return [replace(r, label=None) for r in rows]


def register(client: TestClient, model: str = "m") -> str:
    r = client.put(f"/v1/models/{model}", json={"window": "1h"})
    assert r.status_code == 200, r.text
    return model
