"""Generated prediction and label logs with everything the Spark dedup must resolve
(duplicate predictions, late, corrected and timestamp-less labels, orphan labels), and
the rows that win, to be sent over HTTP for the SQL path."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

T0 = 1795168800  # 2026-11-20T10:00:00Z
HOUR = 3600
CLASSES = ("cat", "dog", "fish")
COUNTRIES = tuple(f"c{i:02d}" for i in range(25))  # > the default top N of 20


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Logs:
    predictions: list[dict[str, Any]] = field(default_factory=list)  # file rows, in order
    actuals: list[dict[str, Any]] = field(default_factory=list)
    # what the SQL path is sent: winning predictions and actuals (HTTP bodies)
    http_predictions: list[dict[str, Any]] = field(default_factory=list)
    http_actuals: list[dict[str, Any]] = field(default_factory=list)


def _value(rng: np.random.Generator, multiclass: bool) -> dict[str, Any]:
    if not multiclass:
        score = float(rng.random())
        if rng.random() < 0.05:
            score = float(rng.integers(2))  # exactly 0 or 1: clipping matters
        return {"score": score}
    p = rng.dirichlet(np.ones(len(CLASSES)))
    if rng.random() < 0.05:
        p = np.eye(len(CLASSES))[int(rng.integers(len(CLASSES)))]  # p = 0 and p = 1
    return {f"proba.{c}": float(x) for c, x in zip(CLASSES, p, strict=True)}


def _label(rng: np.random.Generator, value: dict[str, Any], multiclass: bool) -> Any:
    if not multiclass:
        return int(rng.random() < 0.15 + 0.7 * value["score"])
    probs = np.array([value[f"proba.{c}"] for c in CLASSES])
    mixed = 0.7 * probs + 0.3 / len(CLASSES)
    return CLASSES[int(rng.choice(len(CLASSES), p=mixed / mixed.sum()))]


def generate(seed: int, *, n: int, windows: int, multiclass: bool = False) -> Logs:
    rng = np.random.default_rng(seed)
    logs = Logs()
    late: list[dict[str, Any]] = []  # losing rows placed after the winners
    country_p = np.linspace(2.0, 0.2, len(COUNTRIES))
    country_p /= country_p.sum()
    for i in range(n):
        pid = f"p{i:05d}"
        w_idx = i % windows if i < windows else int(rng.integers(windows))
        ts = T0 + w_idx * HOUR + int(rng.integers(HOUR))
        value = _value(rng, multiclass)
        version = ("", "v1", "v2")[int(rng.integers(3))]
        country = (
            None if rng.random() < 0.1 else COUNTRIES[int(rng.choice(len(COUNTRIES), p=country_p))]
        )
        device = ("ios", "android", "web")[int(rng.integers(3))]
        row = {
            "prediction_id": pid,
            "timestamp": ts,
            **value,
            "model_version": version,
            "segment.country": country,
            "segment.device": device,
        }
        r = rng.random()
        if r < 0.05:  # a later duplicate placed first: loses by timestamp
            later = {
                **row,
                **_value(rng, multiclass),
                "timestamp": ts + 1 + int(rng.integers(HOUR)),
            }
            logs.predictions.append(later)
        logs.predictions.append(row)
        if 0.05 <= r < 0.08:  # same timestamp, later in the file: loses by row order
            late.append({**row, **_value(rng, multiclass), "model_version": "dup"})
        body: dict[str, Any] = {"prediction_id": pid, "timestamp": iso(ts)}
        if multiclass:
            body["probabilities"] = {c: value[f"proba.{c}"] for c in CLASSES}
        else:
            body["score"] = value["score"]
        if version:
            body["model_version"] = version
        body["segments"] = {"device": device, **({"country": country} if country else {})}
        logs.http_predictions.append(body)
        if rng.random() < 0.15:
            continue  # no label yet
        label = _label(rng, value, multiclass)
        weight = float(np.round(rng.uniform(0.1, 3.0), 6)) if rng.random() < 0.7 else 1.0
        label_ts = ts + 60 + int(rng.integers(3 * 24 * HOUR))
        winner = {"prediction_id": pid, "label": label, "weight": weight, "timestamp": label_ts}
        other = _label(rng, value, multiclass)
        s = rng.random()
        if s < 0.05:  # same timestamp earlier in the file: loses by row order
            logs.actuals.append({**winner, "label": other, "weight": 2.5})
        logs.actuals.append(winner)
        if 0.05 <= s < 0.15:  # an older label after the correction: loses by timestamp
            late.append({**winner, "label": other, "weight": 0.5, "timestamp": label_ts - 3600})
        elif 0.15 <= s < 0.2:  # no timestamp: loses to one with
            late.append({**winner, "label": other, "weight": 0.7, "timestamp": None})
        logs.http_actuals.append({"prediction_id": pid, "label": label, "weight": weight})
    for row in late:
        (logs.actuals if "label" in row else logs.predictions).append(row)
    for j in range(5):  # labels of predictions that are not in the log
        logs.actuals.append(
            {
                "prediction_id": f"orphan{j}",
                "label": _label(rng, _value(rng, multiclass), multiclass),
                "weight": 1.0,
                "timestamp": T0,
            }
        )
    return logs


def write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    with (path / "part-0.csv").open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(columns)
        for r in rows:
            cells = []
            for c in columns:
                v = r.get(c)
                if c == "timestamp" and v is not None:
                    v = iso(v)
                cells.append("" if v is None else repr(v) if isinstance(v, float) else v)
            out.writerow(cells)
    return path
