"""Champion vs challenger (GET /v1/compare): the paired difference equals a reference
computed on the intersection of prediction ids both models scored that have an actual;
two versions of one model compare unpaired."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Db
from tests.windows.reference import HOUR, T0, iso, window_of

EPS = 1e-15


def _loss(p: float, y: int) -> float:
    p = min(max(p, EPS), 1 - EPS)
    return -math.log(p) if y == 1 else -math.log(1 - p)


def _stats(la: list[float], lb: list[float], w: list[float]) -> dict[str, Any]:
    la_, lb_, w_ = np.array(la), np.array(lb), np.array(w)
    total = w_.sum()
    d = lb_ - la_
    mean = float((w_ * d).sum() / total)
    n = len(w)
    return {
        "n": n,
        "weight_sum": float(total),
        "log_loss_a": float((w_ * la_).sum() / total),
        "log_loss_b": float((w_ * lb_).sum() / total),
        "difference": mean,
        "difference_stderr": (
            math.sqrt(n / (n - 1) * float((w_**2 * (d - mean) ** 2).sum())) / total
            if n > 1
            else None
        ),
    }


def _assert_close(got: dict[str, Any], exp: dict[str, Any]) -> None:
    assert got["n"] == exp["n"]
    for k in ("weight_sum", "log_loss_a", "log_loss_b", "difference", "difference_stderr"):
        assert got[k] == pytest.approx(exp[k], rel=1e-9, abs=1e-12), k


def _post(
    client: TestClient, model: str, preds: list[dict[str, Any]], acts: list[dict[str, Any]]
) -> None:
    if preds:
        r = client.post(f"/v1/models/{model}/predictions", json={"predictions": preds})
        assert r.status_code == 200, r.text
    if acts:
        r = client.post(f"/v1/models/{model}/actuals", json={"actuals": acts})
        assert r.status_code == 200, r.text


def test_paired_difference_on_the_intersection(client: TestClient, db: Db) -> None:
    for m in ("champ", "chall"):
        assert client.put(f"/v1/models/{m}", json={"window": "1h"}).status_code == 200
    rng = np.random.default_rng(11)
    pa, pb, aa, ab = [], [], [], []
    truth: dict[str, tuple[int, float]] = {}
    scores: dict[str, tuple[float, float, int]] = {}
    for i in range(500):
        pid = f"q{i}"
        ts = T0 + (i % 3) * HOUR + int(rng.integers(HOUR))
        y = int(rng.random() < 0.3)
        w = 1.0 if i % 3 else float(np.round(rng.uniform(0.5, 2.0), 4))
        sa = float(np.clip(0.3 + (0.3 if y else -0.2) + rng.normal(0, 0.2), 0, 1))
        sb = float(np.clip(0.3 + (0.4 if y else -0.25) + rng.normal(0, 0.15), 0, 1))
        in_a, in_b = i % 10 != 0, i % 7 != 0  # some ids only one model scored
        if in_a:
            pa.append({"prediction_id": pid, "score": sa, "timestamp": iso(ts)})
        if in_b:
            # The challenger's clock may differ: windows are the champion's.
            pb.append({"prediction_id": pid, "score": sb, "timestamp": iso(ts + 7 * HOUR)})
        label_to = i % 5  # 0: no label; 1: only a; 2: only b; 3, 4: both
        if label_to in (1, 3, 4):
            aa.append({"prediction_id": pid, "label": y, "weight": w})
        if label_to in (2, 3, 4):
            # When both have an actual the champion's wins; make b's differ to prove it.
            other = {"label": 1 - y, "weight": 9.0} if label_to == 4 else {"label": y, "weight": w}
            ab.append({"prediction_id": pid, **other})
        if in_a and in_b and label_to:
            truth[pid] = (y, w)
            scores[pid] = (sa, sb, window_of(ts))
    _post(client, "champ", pa, aa)
    _post(client, "chall", pb, ab)

    r = client.get("/v1/compare", params={"models": "champ,chall"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["paired"] is True and body["models"] == ["champ", "chall"]

    rows = sorted(scores)
    la = [_loss(scores[p][0], truth[p][0]) for p in rows]
    lb = [_loss(scores[p][1], truth[p][0]) for p in rows]
    w = [truth[p][1] for p in rows]
    _assert_close(body["overall"], _stats(la, lb, w))

    per_window: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(rows):
        per_window[scores[p][2]].append(i)
    got = {
        int(np.datetime64(x["start"].replace("Z", ""), "s").astype(int)): x for x in body["windows"]
    }
    assert sorted(got) == sorted(per_window)
    for ws, idx in per_window.items():
        _assert_close(
            got[ws], _stats([la[i] for i in idx], [lb[i] for i in idx], [w[i] for i in idx])
        )

    # A range restricts the windows (of model a).
    r = client.get(
        "/v1/compare",
        params={"models": "champ,chall", "start": iso(T0 + HOUR), "end": iso(T0 + 2 * HOUR)},
    )
    assert [x["start"] for x in r.json()["windows"]] == [iso(T0 + HOUR)]
    idx = per_window[T0 + HOUR]
    _assert_close(
        r.json()["overall"], _stats([la[i] for i in idx], [lb[i] for i in idx], [w[i] for i in idx])
    )


def test_versions_of_one_model_compare_unpaired(client: TestClient, db: Db) -> None:
    assert client.put("/v1/models/m", json={}).status_code == 200
    rng = np.random.default_rng(5)
    preds, acts = [], []
    losses: dict[str, list[float]] = {"v1": [], "v2": []}
    for i in range(300):
        v = "v1" if i % 2 else "v2"
        y = int(rng.random() < 0.4)
        s = float(rng.random())
        preds.append(
            {"prediction_id": f"x{i}", "score": s, "model_version": v, "timestamp": iso(T0 + i)}
        )
        acts.append({"prediction_id": f"x{i}", "label": y})
        losses[v].append(_loss(s, y))
    _post(client, "m", preds, acts)
    r = client.get("/v1/compare", params={"models": "m,m", "versions": "v1,v2"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["paired"] is False and body["versions"] == ["v1", "v2"]
    a, b = np.array(losses["v1"]), np.array(losses["v2"])
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    assert body["overall"]["difference"] == pytest.approx(b.mean() - a.mean(), rel=1e-9)
    assert body["overall"]["difference_stderr"] == pytest.approx(se, rel=1e-9)
    assert len(body["windows"]) == 1


def test_compare_errors(client: TestClient, db: Db) -> None:
    assert client.put("/v1/models/a", json={}).status_code == 200
    assert (
        client.put("/v1/models/mc", json={"task": "multiclass", "classes": ["x", "y"]}).status_code
        == 200
    )
    assert client.get("/v1/compare", params={"models": "a,nope"}).status_code == 404
    assert client.get("/v1/compare", params={"models": "a,mc"}).status_code == 422
    assert client.get("/v1/compare", params={"models": "a,a"}).status_code == 422
    assert client.get("/v1/compare", params={"models": "a"}).status_code == 422
    assert client.get("/v1/compare").status_code == 422
    r = client.get("/v1/compare", params={"models": "a,a", "versions": "v1,v2"})
    assert r.status_code == 200 and r.json()["windows"] == []
    assert r.json()["overall"]["n"] == 0 and r.json()["overall"]["difference"] is None


def test_paired_multiclass(client: TestClient, db: Db) -> None:
    classes = ["x", "y", "z"]
    for m in ("a", "b"):
        assert (
            client.put(
                f"/v1/models/{m}", json={"task": "multiclass", "classes": classes}
            ).status_code
            == 200
        )
    pa = [
        {
            "prediction_id": "1",
            "probabilities": {"x": 0.5, "y": 0.3, "z": 0.2},
            "timestamp": iso(T0),
        },
        {
            "prediction_id": "2",
            "probabilities": {"x": 0.1, "y": 0.1, "z": 0.8},
            "timestamp": iso(T0),
        },
    ]
    pb = [
        {
            "prediction_id": "1",
            "probabilities": {"x": 0.2, "y": 0.6, "z": 0.2},
            "timestamp": iso(T0),
        },
        {
            "prediction_id": "2",
            "probabilities": {"x": 0.3, "y": 0.3, "z": 0.4},
            "timestamp": iso(T0),
        },
    ]
    _post(
        client,
        "a",
        pa,
        [{"prediction_id": "1", "label": "y"}, {"prediction_id": "2", "label": "z"}],
    )
    _post(client, "b", pb, [])
    body = client.get("/v1/compare", params={"models": "a,b"}).json()
    la = [-math.log(0.3), -math.log(0.8)]
    lb = [-math.log(0.6), -math.log(0.4)]
    _assert_close(body["overall"], _stats(la, lb, [1.0, 1.0]))
