"""Multiclass models end to end (API.md "Predictions", "Actuals", "Metric history"):
bad records are refused by index with nothing stored, and the windows equal an
independent numpy reference and sklearn's log_loss on the stored rows."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn.metrics import log_loss as sk_log_loss

from app.windows import service
from tests.conftest import Db
from tests.windows.reference import HOUR, T0, api_windows, iso, window_of

CLASSES = ["cat", "dog", "fish"]
EPS = 1e-15


def _register(client: TestClient, model: str = "mc") -> str:
    r = client.put(f"/v1/models/{model}", json={"task": "multiclass", "classes": CLASSES})
    assert r.status_code == 200, r.text
    return model


def _pred(pid: str, probs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"prediction_id": pid, "timestamp": iso(T0)}
    if probs is not None:
        body["probabilities"] = probs
    body.update(extra)
    return body


GOOD = {"cat": 0.7, "dog": 0.2, "fish": 0.1}

BAD_PREDICTIONS = [
    ("missing class", {"cat": 0.7, "dog": 0.3}, "missing 'fish'"),
    ("unknown class", {**GOOD, "bird": 0.0}, "unknown 'bird'"),
    ("sum too small", {"cat": 0.7, "dog": 0.2, "fish": 0.09}, "sum to 1"),
    ("sum too large", {"cat": 0.7, "dog": 0.2, "fish": 0.1 + 2e-6}, "sum to 1"),
    ("out of range", {"cat": 1.5, "dog": -0.4, "fish": -0.1}, None),
    ("score instead", None, "probabilities is required"),
]


@pytest.mark.parametrize(
    ("case", "probs", "message"), BAD_PREDICTIONS, ids=[c[0] for c in BAD_PREDICTIONS]
)
def test_bad_probabilities_are_refused_by_index(
    client: TestClient, db: Db, case: str, probs: dict[str, Any] | None, message: str | None
) -> None:
    m = _register(client)
    bad = _pred("bad", probs)
    batch = [_pred("ok1", GOOD), bad, _pred("ok2", GOOD)]
    r = client.post(f"/v1/models/{m}/predictions", json={"predictions": batch})
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert {d["index"] for d in detail} == {1}, detail
    if message:
        assert any(message in d["message"] for d in detail), detail
    assert db.count("predictions") == 0


def test_score_on_a_multiclass_model_and_probabilities_on_a_binary_one(
    client: TestClient, db: Db
) -> None:
    m = _register(client)
    r = client.post(f"/v1/models/{m}/predictions", json={"predictions": [_pred("a", score=0.3)]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "score"
    assert client.put("/v1/models/bin", json={}).status_code == 200
    r = client.post("/v1/models/bin/predictions", json={"predictions": [_pred("a", GOOD)]})
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "probabilities"
    assert db.count("predictions") == 0


def test_tolerance_is_one_in_a_million(client: TestClient, db: Db) -> None:
    m = _register(client)
    near = {"cat": 0.7, "dog": 0.2, "fish": 0.1 + 9e-7}
    r = client.post(f"/v1/models/{m}/predictions", json={"predictions": [_pred("a", near)]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("label", ["bird", "", 1, True, "Cat"])
def test_actual_label_must_be_a_class_name(client: TestClient, db: Db, label: Any) -> None:
    m = _register(client)
    body = {
        "actuals": [{"prediction_id": "a", "label": "cat"}, {"prediction_id": "b", "label": label}]
    }
    r = client.post(f"/v1/models/{m}/actuals", json=body)
    assert r.status_code == 422, r.text
    assert {d["index"] for d in r.json()["detail"]} == {1}
    assert db.count("actuals") == 0


def test_binary_label_must_not_be_a_string(client: TestClient, db: Db) -> None:
    assert client.put("/v1/models/bin", json={}).status_code == 200
    r = client.post(
        "/v1/models/bin/actuals", json={"actuals": [{"prediction_id": "a", "label": "1"}]}
    )
    assert r.status_code == 422
    assert db.count("actuals") == 0


def _random_rows(rng: np.random.Generator, n: int, windows: int) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        raw = rng.dirichlet(np.ones(len(CLASSES)) * 0.8)
        if i % 41 == 0:
            raw = np.array([0.0, 1.0, 0.0])  # p_true may be exactly 0: clipping matters
        probs = {c: float(p) for c, p in zip(CLASSES, raw, strict=True)}
        truth = int(rng.choice(len(CLASSES), p=0.6 * raw + 0.4 / len(CLASSES)))
        label = None if rng.random() < 0.15 else CLASSES[truth]
        weight = float(np.round(rng.uniform(0.2, 3.0), 6)) if rng.random() < 0.5 else 1.0
        ts = T0 + (i % windows) * HOUR + int(rng.integers(HOUR))
        rows.append(
            {"pid": f"r{i:04d}", "ts": ts, "probs": probs, "label": label, "weight": weight}
        )
    return rows


def _reference(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Independent numpy reference of one multiclass window."""
    # Probabilities as the service stores them: in class order, exactly as sent.
    P_all = np.array([[r["probs"][c] for c in CLASSES] for r in rows])
    C_all = np.clip(P_all, EPS, 1 - EPS)
    out: dict[str, Any] = {
        "predictions": len(rows),
        "expected_log_loss": float(np.mean(-(C_all * np.log(C_all)).sum(axis=1))),
    }
    lab = [r for r in rows if r["label"] is not None]
    out["labeled"] = len(lab)
    if not lab:
        return out
    P = np.array([[r["probs"][c] for c in CLASSES] for r in lab])
    y = np.array([CLASSES.index(r["label"]) for r in lab])
    w = np.array([r["weight"] for r in lab])
    p_true = np.clip(P[np.arange(len(y)), y], EPS, 1 - EPS)
    losses = -np.log(p_true)
    total = w.sum()
    loss = float((w * losses).sum() / total)
    rates = {c: float(w[y == k].sum() / total) for k, c in enumerate(CLASSES)}
    base = -sum(q * math.log(q) for q in rates.values() if q > 0)
    conf = P.max(axis=1)
    correct = (P.argmax(axis=1) == y).astype(float)
    out.update(
        log_loss=loss,
        baseline_log_loss=base,
        skill=1 - loss / base if base > 0 else None,
        class_rates=rates,
        class_log_loss={
            c: (
                float((w[y == k] * losses[y == k]).sum() / w[y == k].sum())
                if (y == k).any()
                else None
            )
            for k, c in enumerate(CLASSES)
        },
        accuracy=float((w * correct).sum() / total),
        sklearn=float(
            sk_log_loss(
                y, np.clip(P, EPS, 1 - EPS), labels=list(range(len(CLASSES))), sample_weight=w
            )
        ),
        conf=conf,
        correct=correct,
        w=w,
        label_coverage=len(lab) / len(rows),
    )
    return out


def test_multiclass_windows_equal_the_reference(client: TestClient, db: Db) -> None:
    m = _register(client)
    rows = _random_rows(np.random.default_rng(7), n=400, windows=3)
    preds = [_pred(r["pid"], r["probs"], timestamp=iso(r["ts"])) for r in rows]
    r = client.post(f"/v1/models/{m}/predictions", json={"predictions": preds})
    assert r.json() == {"accepted": 400, "duplicates": 0}
    actuals = [
        {"prediction_id": r["pid"], "label": r["label"], "weight": r["weight"]}
        for r in rows
        if r["label"] is not None
    ]
    assert client.post(f"/v1/models/{m}/actuals", json={"actuals": actuals}).status_code == 200
    service.compute_pass(factory=db.factory, read_factory=db.read_factory, settings=db.settings)

    by_window: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_window[window_of(row["ts"])].append(row)
    got = api_windows(client, m)
    assert sorted(got) == sorted(by_window)
    for ws, window_rows in by_window.items():
        exp, w = _reference(window_rows), got[ws]
        assert w["predictions"] == exp["predictions"] and w["labeled"] == exp["labeled"]
        assert w["positive_rate"] is None
        assert w["log_loss"] == pytest.approx(exp["log_loss"], rel=1e-9)
        assert w["log_loss"] == pytest.approx(exp["sklearn"], rel=1e-9)
        assert w["baseline_log_loss"] == pytest.approx(exp["baseline_log_loss"], rel=1e-9)
        assert w["skill"] == pytest.approx(exp["skill"], rel=1e-9)
        assert w["accuracy"] == pytest.approx(exp["accuracy"], rel=1e-9)
        assert w["expected_log_loss"] == pytest.approx(exp["expected_log_loss"], rel=1e-9)
        assert w["label_coverage"] == pytest.approx(exp["label_coverage"], rel=1e-12)
        assert w["class_rates"] == pytest.approx(exp["class_rates"], rel=1e-9)
        assert set(w["class_log_loss"]) == set(CLASSES)
        for c in CLASSES:
            assert w["class_log_loss"][c] == pytest.approx(exp["class_log_loss"][c], rel=1e-9)
        assert w["calibration_gap"] == pytest.approx(
            exp["log_loss"] - exp["expected_log_loss"], rel=1e-9, abs=1e-12
        )
        # Reliability on the top-class confidence.
        bins = np.minimum(np.floor(exp["conf"] * 10), 9).astype(int)
        for k, b in enumerate(w["reliability"]):
            sel = bins == k
            assert b["count"] == int(sel.sum())
            if sel.any():
                ww = exp["w"][sel]
                assert b["mean_predicted"] == pytest.approx(
                    float((ww * exp["conf"][sel]).sum() / ww.sum()), rel=1e-9
                )
                assert b["observed_rate"] == pytest.approx(
                    float((ww * exp["correct"][sel]).sum() / ww.sum()), rel=1e-9, abs=1e-12
                )

    # A version filter on a multiclass model works on the same fields.
    filtered = api_windows(client, m, model_version="")
    assert {ws: v["log_loss"] for ws, v in filtered.items()} == {
        ws: v["log_loss"] for ws, v in got.items()
    }


def test_one_class_window_has_zero_baseline(client: TestClient, db: Db) -> None:
    m = _register(client)
    preds = [_pred(f"p{i}", GOOD) for i in range(3)]
    client.post(f"/v1/models/{m}/predictions", json={"predictions": preds})
    actuals = [{"prediction_id": f"p{i}", "label": "dog"} for i in range(3)]
    client.post(f"/v1/models/{m}/actuals", json={"actuals": actuals})
    service.compute_pass(factory=db.factory, read_factory=db.read_factory, settings=db.settings)
    (w,) = api_windows(client, m).values()
    assert w["baseline_log_loss"] == 0.0
    assert w["skill"] is None
    assert w["class_rates"] == {"cat": 0.0, "dog": 1.0, "fish": 0.0}
    assert w["log_loss"] == pytest.approx(-math.log(0.2), rel=1e-12)
    assert w["class_log_loss"] == {"cat": None, "dog": pytest.approx(-math.log(0.2)), "fish": None}
