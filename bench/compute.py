"""Compute pass cost: one pass over N labeled predictions vs reading + log loss by hand.

    .venv/bin/python bench/compute.py            # 1.2M predictions in 24 hourly windows
    .venv/bin/python bench/compute.py --quick    # smoke run, a few seconds

Everything is started here: fresh PostgreSQL databases (dropped at the end), loaded
directly with COPY (not over HTTP), one binary model each, its windows marked dirty with
`INSERT INTO dirty_windows`, then VACUUM ANALYZE (the steady state autovacuum reaches).

Three data sets, each in its own database (so no query plan or table scan sees another):

- unsegmented: N predictions without version or segments (model_version '', segments
  NULL, as the service stores a prediction that sends neither).
- segmented: the SAME rows (same ids, times, scores, labels, weights), plus a
  model_version from 3 (v1/v2/v3: 20/50/30%) and segments with 2 keys of 20 values
  each (country, device; Zipf-like shares 28% ... 1.4%, independent), stored as the
  service stores them (JSON text, keys sorted). Per window that is 3 + 20 + 20 slices,
  all within the default top N (20), so no `other` rows.
- history: 30 days of hourly windows (720) with `--history-rows` predictions each,
  segmented like the above, computed once; then filtered history queries.

Measured, each in a FRESH SUBPROCESS of this script (`--child pass|reference`) so both
pay the same costs and each one's own peak RSS is known (VmHWM of the child's address
space; getrusage/wait4 ru_maxrss would include this parent's peak, which survives
fork + exec on Linux); the clock runs inside the child around the work only
(connecting included, interpreter start-up and imports excluded). Repeated `--repeats`
times (order alternating), medians reported:

- pass:      app.windows.service.compute_pass over all dirty windows (the windows are
             marked dirty again before every repeat).
- reference: one psycopg query of the same joined rows (prediction LEFT JOIN actual),
             cursor rows -> numpy arrays, then app.metrics binary_losses +
             weighted_log_loss once over all labeled rows.

- segmented: the same compute_pass child, on the segmented database: reported as
             segmented pass / unsegmented pass (target <= 4).

Also: `lossmon compute` end to end (CLI subprocess: start-up + schema check + pass),
and the idle pass (no dirty windows, at this history size), in-process, median of
`--idle-runs`.

Filtered history (history database): `GET /v1/models/{id}/metrics` over the full 30
days, in-process through app.main.create_app + fastapi's TestClient (the whole ASGI
app: routing, validation, the query, the response model and JSON; no network), one
warm-up each, then `--requests` rounds, the kinds interleaved within a round:
unfiltered (for reference), `?segment=country:X` (X cycling through the 20 countries),
`?model_version=v2` (target < 100 ms each) and, for information, the on-demand
combination `?model_version=v2&segment=country:X`. Median and p90 reported.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from _common import (
    REPO_DIR,
    Database,
    copy_binary_rows,
    fresh_database,
    load_average,
    machine_info,
    median,
    percentile,
    print_table,
    write_results,
)

NAME = "compute"
MODEL_ID = "bench"
WINDOW_SECONDS = 3600
BASE_EPOCH = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())

# The segmented data sets: 3 versions x 2 segment keys x 20 values.
VERSIONS = ("v1", "v2", "v3")
VERSION_SHARES = (0.2, 0.5, 0.3)
SEGMENT_VALUES: dict[str, tuple[str, ...]] = {
    "country": (
        "DE",
        "US",
        "FR",
        "GB",
        "IN",
        "BR",
        "JP",
        "IT",
        "ES",
        "CA",
        "MX",
        "NL",
        "PL",
        "SE",
        "TR",
        "AU",
        "KR",
        "ID",
        "AR",
        "CH",
    ),
    "device": tuple(f"device-{i:02d}" for i in range(20)),
}
FILTER_VERSION = "v2"
HISTORY_DAYS = 30

REFERENCE_SQL = (
    "SELECT p.window_start, p.score, a.label, a.weight FROM predictions p "
    "LEFT JOIN actuals a ON a.model_id=p.model_id AND a.prediction_id=p.prediction_id "
    "WHERE p.model_id=%s"
)


def vm_hwm_mb(pid: int | str = "self") -> float | None:
    """Peak RSS of a process's current address space (VmHWM), None if it is gone.

    Not getrusage's ru_maxrss: on Linux that survives fork + exec, so a child would
    report its (large) parent's peak as its own.
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ---------------------------------------------------------------------------- children


def child_pass(sa_url: str) -> dict[str, Any]:
    from app.config import load_settings
    from app.db import create_engine_for, make_sessionmaker
    from app.windows.service import compute_pass

    settings = load_settings(database_url=sa_url)
    engine = create_engine_for(settings)
    factory, read_factory = make_sessionmaker(engine), make_sessionmaker(engine, readonly=True)
    rss_before = vm_hwm_mb()
    t0 = time.perf_counter()
    result = compute_pass(factory=factory, read_factory=read_factory, settings=settings)
    seconds = time.perf_counter() - t0
    engine.dispose()
    return {
        "seconds": seconds,
        "computed": result.computed,
        "retried": result.retried,
        "stale": result.stale,
        "rss_after_imports_mb": rss_before,
        "peak_rss_mb": vm_hwm_mb(),
    }


def child_reference(pg_url: str, eps: float) -> dict[str, Any]:
    from app.metrics.logloss import binary_losses, weighted_log_loss

    rss_before = vm_hwm_mb()
    t0 = time.perf_counter()
    with psycopg.connect(pg_url) as conn, conn.cursor() as cur:
        cur.execute(REFERENCE_SQL, (MODEL_ID,))
        rows = cur.fetchall()
    arr = np.array(rows, dtype=np.float64)  # None (no actual) -> NaN
    del rows
    labels = arr[:, 2]
    labeled = ~np.isnan(labels)
    losses = binary_losses(arr[labeled, 1], labels[labeled], eps)
    log_loss = weighted_log_loss(losses, arr[labeled, 3])
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "rows": int(arr.shape[0]),
        "labeled": int(labeled.sum()),
        "log_loss": log_loss,
        "rss_after_imports_mb": rss_before,
        "peak_rss_mb": vm_hwm_mb(),
    }


@dataclass
class ChildRun:
    data: dict[str, Any]
    wall_s: float  # the whole subprocess, start-up included
    peak_rss_mb: float  # the child's VmHWM: self-reported, else polled every few ms


def run_child(argv: list[str], env: dict[str, str] | None = None) -> tuple[str, ChildRun]:
    with tempfile.TemporaryFile("w+") as out:
        t0 = time.perf_counter()
        # stderr too (logging); the result is the last line.
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO_DIR)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, vm_hwm_mb(proc.pid) or 0.0)
            time.sleep(0.005)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited with {proc.returncode}:\n{text}")
    return text, ChildRun(data={}, wall_s=wall, peak_rss_mb=peak)


def run_self_child(kind: str, db: Database) -> ChildRun:
    argv = [sys.executable, __file__, "--child", kind, "--child-url", db.sa_url]
    out, run = run_child(argv)
    run.data = json.loads(out.strip().splitlines()[-1])
    if run.data.get("peak_rss_mb"):
        run.peak_rss_mb = run.data["peak_rss_mb"]
    return run


# ------------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Loaded:
    rows: int
    labeled: int
    windows: list[int]
    seconds: float


def _zipf_shares(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1)
    return w / w.sum()


def segment_columns(rows: int, seed: int) -> tuple[list[str], list[str]]:
    """model_version and segments JSON text per row, as the ingestion service stores
    them (app.ingestion.service._segments_json: json.dumps of the sorted items).

    Drawn from their own generator, so the numeric columns do not depend on them."""
    rng = np.random.default_rng(seed)
    version = rng.choice(len(VERSIONS), size=rows, p=VERSION_SHARES)
    keys = sorted(SEGMENT_VALUES)
    codes = [
        rng.choice(len(SEGMENT_VALUES[k]), size=rows, p=_zipf_shares(len(SEGMENT_VALUES[k])))
        for k in keys
    ]
    sizes = [len(SEGMENT_VALUES[k]) for k in keys]
    combo = np.ravel_multi_index(codes, sizes)
    # One text per value combination, in ravel_multi_index order.
    texts = [
        json.dumps(dict(sorted((k, SEGMENT_VALUES[k][i]) for k, i in zip(keys, idx, strict=True))))
        for idx in np.ndindex(*sizes)
    ]
    return [VERSIONS[v] for v in version.tolist()], [texts[c] for c in combo.tolist()]


def load(
    db: Database,
    *,
    rows: int,
    windows: int,
    label_fraction: float,
    seed: int,
    segmented: bool = False,
) -> Loaded:
    """Model via the app's registry; predictions + actuals via COPY; windows marked dirty.

    Unsegmented rows have model_version '' and segments NULL; segmented ones get
    segment_columns(). The numeric columns depend only on rows, windows and seed."""
    from app.config import load_settings
    from app.db import create_engine_for, make_sessionmaker, session_scope
    from app.registry import service as model_service
    from app.registry.schemas import ModelIn

    t0 = time.perf_counter()
    engine = create_engine_for(load_settings(database_url=db.sa_url))
    try:
        with session_scope(make_sessionmaker(engine)) as session:
            model_service.upsert_model(
                session=session,
                model_id=MODEL_ID,
                body=ModelIn(task="binary", window="1h"),
                now=datetime.now(UTC),
            )
    finally:
        engine.dispose()

    rng = np.random.default_rng(seed)
    # Row i lies in window i * windows // rows (time order), at a random offset in it.
    window_index = np.arange(rows, dtype=np.int64) * windows // rows
    window_start = BASE_EPOCH + window_index * WINDOW_SECONDS
    ts_us = window_start * 1_000_000 + rng.integers(0, WINDOW_SECONDS * 1_000_000, size=rows)
    scores = rng.beta(2.0, 5.0, size=rows)
    has_label = rng.random(rows) < label_fraction
    labels = (rng.random(rows) < scores).astype(np.int64)  # calibrated model
    delay_us = rng.integers(60_000_000, 6 * 3600 * 1_000_000, size=rows)
    received_us = int(time.time() * 1e6)
    if segmented:
        versions, segments = segment_columns(rows, seed + 1)
    else:
        versions, segments = [""] * rows, ["\\N"] * rows  # '' and NULL in COPY text

    with psycopg.connect(db.pg_url) as conn, conn.cursor() as cur:
        copy_binary_rows(
            cur,
            model_id=MODEL_ID,
            ts_us=ts_us,
            window_start=window_start,
            scores=scores,
            labels=labels,
            labeled=np.flatnonzero(has_label),
            actual_ts_us=ts_us + delay_us,
            received_us=received_us,
            model_version=versions,
            segments=segments,
        )
        starts = sorted({int(w) for w in np.unique(window_start)})
        conn.commit()
    mark_dirty(db, starts)
    with psycopg.connect(db.pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE predictions")
        conn.execute("VACUUM ANALYZE actuals")
        conn.execute("CHECKPOINT")
    return Loaded(
        rows=rows,
        labeled=int(has_label.sum()),
        windows=starts,
        seconds=time.perf_counter() - t0,
    )


def mark_dirty(db: Database, starts: Sequence[int]) -> None:
    with psycopg.connect(db.pg_url) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO dirty_windows (model_id, window_start, generation) VALUES (%s, %s, 1) "
            "ON CONFLICT (model_id, window_start) "
            "DO UPDATE SET generation = dirty_windows.generation + 1",
            [(MODEL_ID, s) for s in starts],
        )


def scalar(db: Database, sql: str) -> Any:
    with psycopg.connect(db.pg_url) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


# ------------------------------------------------------------------------------- main


def idle_passes(db: Database, runs: int) -> list[float]:
    """compute_pass with nothing dirty, in this process (warm pool), seconds per run."""
    from app.config import load_settings
    from app.db import create_engine_for, make_sessionmaker
    from app.windows.service import compute_pass

    settings = load_settings(database_url=db.sa_url)
    engine = create_engine_for(settings)
    factory, read_factory = make_sessionmaker(engine), make_sessionmaker(engine, readonly=True)
    times = []
    try:
        compute_pass(factory=factory, read_factory=read_factory, settings=settings)  # warm-up
        for _ in range(runs):
            t0 = time.perf_counter()
            result = compute_pass(factory=factory, read_factory=read_factory, settings=settings)
            times.append(time.perf_counter() - t0)
            if result.computed:
                raise RuntimeError(f"idle pass computed {result.computed} windows")
    finally:
        engine.dispose()
    return times


def check_metrics(db: Database, loaded: Loaded, reference_log_loss: float) -> dict[str, Any]:
    """The stored windows cover every row and agree with the reference's overall loss."""
    with psycopg.connect(db.pg_url) as conn:
        row = conn.execute(
            "SELECT count(*), sum(predictions), sum(labeled), "
            "sum(log_loss * weight_sum) / sum(weight_sum) FROM window_metrics WHERE model_id=%s",
            (MODEL_ID,),
        ).fetchone()
    assert row is not None
    windows, predictions, labeled, pooled = row
    return {
        "windows": int(windows),
        "predictions": int(predictions),
        "labeled": int(labeled),
        "pooled_log_loss": float(pooled),
        "reference_log_loss": reference_log_loss,
        "ok": (
            int(windows) == len(loaded.windows)
            and int(predictions) == loaded.rows
            and int(labeled) == loaded.labeled
            and abs(float(pooled) - reference_log_loss) <= 1e-9 * abs(reference_log_loss)
        ),
    }


def check_slices(db: Database, loaded: Loaded, reference_log_loss: float) -> dict[str, Any]:
    """Per slice dimension (version; each segment key): its rows cover every window's
    rows once and pool to the reference's overall loss."""
    with psycopg.connect(db.pg_url) as conn:
        found = conn.execute(
            "SELECT kind, key, count(*), count(DISTINCT value), sum(predictions), sum(labeled), "
            "sum(log_loss * weight_sum) / sum(weight_sum), bool_or(other) FROM slice_metrics "
            "WHERE model_id=%s GROUP BY kind, key ORDER BY kind, key",
            (MODEL_ID,),
        ).fetchall()
    dims = {}
    ok = bool(found)
    for kind, key, n, distinct, predictions, labeled, pooled, other in found:
        dim_ok = (
            int(predictions) == loaded.rows
            and int(labeled) == loaded.labeled
            and abs(float(pooled) - reference_log_loss) <= 1e-9 * abs(reference_log_loss)
        )
        ok = ok and dim_ok
        dims[f"{kind}:{key}" if key else kind] = {
            "rows": int(n),
            "values": int(distinct),
            "predictions": int(predictions),
            "labeled": int(labeled),
            "pooled_log_loss": float(pooled),
            "other_rows": bool(other),
            "ok": dim_ok,
        }
    return {"dimensions": dims, "slice_rows": sum(d["rows"] for d in dims.values()), "ok": ok}


# ------------------------------------------------------------------- filtered history


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _latency(times: Sequence[float]) -> dict[str, float]:
    return {
        "median_ms": round(median(times) * 1e3, 2),
        "p90_ms": round(percentile(times, 90) * 1e3, 2),
        "max_ms": round(max(times) * 1e3, 2),
        "n": len(times),
    }


def filtered_history(db: Database, loaded: Loaded, requests: int) -> dict[str, Any]:
    """Compute the history model once, then time GET /v1/models/{id}/metrics in-process."""
    with warnings.catch_warnings():  # starlette's note about httpx; not ours to fix
        warnings.simplefilter("ignore", DeprecationWarning)
        from fastapi.testclient import TestClient

    from app.config import load_settings
    from app.db import create_engine_for, make_sessionmaker
    from app.main import create_app
    from app.windows.service import compute_pass

    settings = load_settings(database_url=db.sa_url)
    engine = create_engine_for(settings)
    try:
        t0 = time.perf_counter()
        result = compute_pass(
            factory=make_sessionmaker(engine),
            read_factory=make_sessionmaker(engine, readonly=True),
            settings=settings,
        )
        compute_s = time.perf_counter() - t0
    finally:
        engine.dispose()
    if result.computed != len(loaded.windows):
        raise RuntimeError(f"history pass computed {result.computed} windows")
    with psycopg.connect(db.pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE window_metrics")
        conn.execute("VACUUM ANALYZE slice_metrics")
        slice_rows = conn.execute("SELECT count(*) FROM slice_metrics").fetchone()
        version_rows = conn.execute(
            "SELECT count(*) FROM predictions WHERE model_version = %s", (FILTER_VERSION,)
        ).fetchone()
        country_rows = conn.execute(
            "SELECT count(*) FROM predictions WHERE (segments ->> 'country') = %s",
            (SEGMENT_VALUES["country"][0],),
        ).fetchone()
    assert slice_rows and version_rows and country_rows

    countries = SEGMENT_VALUES["country"]
    span = {
        "start": _iso(loaded.windows[0]),
        "end": _iso(loaded.windows[-1] + WINDOW_SECONDS),
    }
    kinds: dict[str, Any] = {
        "unfiltered": lambda i: {},
        "segment": lambda i: {"segment": f"country:{countries[i % len(countries)]}"},
        "version": lambda i: {"model_version": FILTER_VERSION},
        "combination": lambda i: {
            "model_version": FILTER_VERSION,
            "segment": f"country:{countries[i % len(countries)]}",
        },
    }
    url = f"/v1/models/{MODEL_ID}/metrics"
    times: dict[str, list[float]] = {k: [] for k in kinds}
    windows: dict[str, list[int]] = {k: [] for k in kinds}
    sizes: dict[str, list[int]] = {k: [] for k in kinds}
    checks: dict[str, bool] = {}
    with TestClient(create_app(settings)) as client:
        for kind, params in kinds.items():  # warm-up; also checks the totals
            body = client.get(url, params={**span, **params(0)})
            body.raise_for_status()
            total = sum(w["predictions"] for w in body.json()["windows"])
            if kind == "unfiltered":
                checks[kind] = total == loaded.rows
            elif kind == "segment":
                checks[kind] = total == country_rows[0]
            elif kind == "version":
                checks[kind] = total == version_rows[0]
        for i in range(requests):
            for kind, params in kinds.items():
                t0 = time.perf_counter()
                response = client.get(url, params={**span, **params(i)})
                times[kind].append(time.perf_counter() - t0)
                response.raise_for_status()
                windows[kind].append(len(response.json()["windows"]))
                sizes[kind].append(len(response.content))
    return {
        "compute_pass_s": round(compute_s, 3),
        "slice_rows": int(slice_rows[0]),
        "span": span,
        "how": "in-process: app.main.create_app + fastapi TestClient, kinds interleaved",
        "queries": {
            kind: {
                **_latency(times[kind]),
                "example": {**params(0)},
                "windows_min_max": [min(windows[kind]), max(windows[kind])],
                "response_kb_median": round(median(sizes[kind]) / 1e3, 1),
            }
            for kind, params in kinds.items()
        },
        "checks": checks,
        "ok": all(checks.values()),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=1_200_000, help="predictions (default 1.2M)")
    p.add_argument("--windows", type=int, default=24, help="hourly windows they span")
    p.add_argument("--label-fraction", type=float, default=0.9, help="share with an actual")
    p.add_argument(
        "--repeats", type=int, help="pass / reference / segmented runs (median; default 3)"
    )
    p.add_argument("--idle-runs", type=int, default=20, help="idle passes (median)")
    p.add_argument(
        "--history-days", type=int, default=HISTORY_DAYS, help="history model: days of 1h windows"
    )
    p.add_argument(
        "--history-rows", type=int, default=300, help="history model: predictions per window"
    )
    p.add_argument("--requests", type=int, default=30, help="timed history requests per kind")
    p.add_argument("--seed", type=int, default=20261120)
    p.add_argument("--database", default="lossmon_bench_compute", help="scratch database name")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 60,000 rows, 6 windows, 1 repeat; history 2 days x 100 rows, 5 requests",
    )
    p.add_argument("--child", choices=["pass", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--child-url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.windows, args.idle_runs = 60_000, 6, 5
        args.history_days, args.history_rows, args.requests = 2, 100, 5
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


def _runs(runs: Sequence[ChildRun]) -> str:
    return "[" + ", ".join(f"{r.data['seconds']:.3f}" for r in runs) + "]"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        if args.child == "pass":
            data = child_pass(args.child_url)
        else:
            data = child_reference(
                args.child_url.replace("postgresql+psycopg://", "postgresql://", 1), 1e-15
            )
        print(json.dumps(data))
        return 0

    wall0 = time.perf_counter()
    load0 = load_average()
    with ExitStack() as stack:
        db = stack.enter_context(fresh_database(args.database))
        seg_db = stack.enter_context(fresh_database(f"{args.database}_seg"))
        print(f"loading {args.rows:,} predictions in {args.windows} windows ...", flush=True)
        shape = {
            "rows": args.rows,
            "windows": args.windows,
            "label_fraction": args.label_fraction,
            "seed": args.seed,
        }
        loaded = load(db, **shape)
        print(
            f"loaded {loaded.rows:,} predictions, {loaded.labeled:,} actuals, "
            f"{len(loaded.windows)} dirty windows in {loaded.seconds:.1f}s",
            flush=True,
        )
        seg_loaded = load(seg_db, **shape, segmented=True)
        print(
            f"loaded the same rows with 3 versions x 2 segment keys x 20 values "
            f"in {seg_loaded.seconds:.1f}s",
            flush=True,
        )
        passes: list[ChildRun] = []
        refs: list[ChildRun] = []
        seg_passes: list[ChildRun] = []
        runs = {"reference": refs, "pass": passes, "segmented": seg_passes}
        for r in range(args.repeats):
            if r > 0:
                mark_dirty(db, loaded.windows)
                mark_dirty(seg_db, seg_loaded.windows)
            order = ("reference", "pass", "segmented")
            for kind in order if r % 2 == 0 else order[::-1]:
                run = run_self_child(
                    "reference" if kind == "reference" else "pass",
                    seg_db if kind == "segmented" else db,
                )
                runs[kind].append(run)
                print(f"  repeat {r + 1}: {kind:<9} {run.data['seconds']:.3f}s", flush=True)
                if kind != "reference" and run.data["computed"] != len(loaded.windows):
                    raise RuntimeError(f"{kind} pass computed {run.data['computed']} windows")
        for d in (db, seg_db):
            if scalar(d, "SELECT count(*) FROM dirty_windows"):
                raise RuntimeError(f"dirty windows left after the pass in {d.name}")

        mark_dirty(db, loaded.windows)
        env = {**os.environ, "LOSSMON_DATABASE_URL": db.sa_url}
        cli_out, cli = run_child([sys.executable, "-m", "app.cli", "compute"], env=env)
        cli_out = cli_out.strip().splitlines()[-1]
        print(f"  lossmon compute: {cli_out} ({cli.wall_s:.2f}s wall)", flush=True)

        idle = idle_passes(db, args.idle_runs)
        ref_log_loss = refs[0].data["log_loss"]
        check = check_metrics(db, loaded, ref_log_loss)
        # The segmented rows carry the same numbers: same windows, same pooled loss.
        seg_check = check_metrics(seg_db, seg_loaded, ref_log_loss)
        slices_plain = check_slices(db, loaded, ref_log_loss)
        slices_seg = check_slices(seg_db, seg_loaded, ref_log_loss)
        table_mb = scalar(
            db,
            "SELECT (pg_total_relation_size('predictions') "
            "+ pg_total_relation_size('actuals')) / 1e6",
        )
        seg_table_mb = scalar(
            seg_db,
            "SELECT (pg_total_relation_size('predictions') "
            "+ pg_total_relation_size('actuals')) / 1e6",
        )

    hist_windows = args.history_days * 24
    hist_rows = hist_windows * args.history_rows
    with fresh_database(f"{args.database}_hist") as hist_db:
        print(
            f"history: loading {hist_rows:,} segmented predictions in {hist_windows} windows ...",
            flush=True,
        )
        hist_loaded = load(
            hist_db,
            rows=hist_rows,
            windows=hist_windows,
            label_fraction=args.label_fraction,
            seed=args.seed + 2,
            segmented=True,
        )
        print(f"  loaded in {hist_loaded.seconds:.1f}s; computing + querying ...", flush=True)
        hist = filtered_history(hist_db, hist_loaded, args.requests)

    pass_s = median([r.data["seconds"] for r in passes])
    ref_s = median([r.data["seconds"] for r in refs])
    seg_s = median([r.data["seconds"] for r in seg_passes])
    ratio = pass_s / ref_s
    seg_ratio = seg_s / pass_s
    idle_ms = median(idle) * 1e3
    wall_s = time.perf_counter() - wall0
    pass_rss = median([r.peak_rss_mb for r in passes])
    ref_rss = median([r.peak_rss_mb for r in refs])
    seg_rss = median([r.peak_rss_mb for r in seg_passes])
    pass_rss0 = median([r.data["rss_after_imports_mb"] for r in passes])
    ref_rss0 = median([r.data["rss_after_imports_mb"] for r in refs])
    all_ok = check["ok"] and seg_check["ok"] and slices_plain["ok"] and slices_seg["ok"]

    rows: list[tuple[str, str]] = [
        (
            "predictions / labeled / windows",
            f"{loaded.rows:,} / {loaded.labeled:,} / {len(loaded.windows)}",
        ),
        ("load (COPY + mark dirty + VACUUM ANALYZE)", f"{loaded.seconds:.1f} s"),
        ("tables on disk (predictions + actuals)", f"{float(table_mb):.0f} MB"),
        ("measured in", "fresh subprocesses, clock around the work"),
        (
            f"reference: query + numpy + log loss (median of {len(refs)})",
            f"{ref_s:.3f} s  {_runs(refs)}",
        ),
        (
            f"compute pass, all windows (median of {len(passes)})",
            f"{pass_s:.3f} s  {_runs(passes)}",
        ),
        ("ratio pass / reference, target <= 2.0", f"{ratio:.2f}"),
        (
            "peak RSS pass subprocess (after imports)",
            f"{pass_rss:.0f} MB ({pass_rss0:.0f} MB)",
        ),
        (
            "peak RSS reference subprocess (after imports)",
            f"{ref_rss:.0f} MB ({ref_rss0:.0f} MB)",
        ),
        ("`lossmon compute` CLI: wall incl. start-up", f"{cli.wall_s:.2f} s"),
        ("`lossmon compute` CLI: peak RSS", f"{cli.peak_rss_mb:.0f} MB"),
        (
            f"idle pass, nothing dirty, in-process (median of {len(idle)}), target < 50 ms",
            f"{idle_ms:.1f} ms (p90 {percentile(idle, 90) * 1e3:.1f})",
        ),
        (
            "windows match reference (count, rows, pooled log loss)",
            f"{'yes' if check['ok'] else 'NO'} ({check['pooled_log_loss']:.6f})",
        ),
        ("segmented: same rows + 3 versions x 2 keys x 20 values", ""),
        ("segmented: load / tables on disk", f"{seg_loaded.seconds:.1f} s / {seg_table_mb:.0f} MB"),
        (
            f"segmented: compute pass, all windows (median of {len(seg_passes)})",
            f"{seg_s:.3f} s  {_runs(seg_passes)}",
        ),
        ("ratio segmented pass / unsegmented pass, target <= 4.0", f"{seg_ratio:.2f}"),
        ("segmented: peak RSS pass subprocess", f"{seg_rss:.0f} MB"),
        (
            "slice rows per pass (unsegmented / segmented)",
            f"{slices_plain['slice_rows']:,} / {slices_seg['slice_rows']:,}",
        ),
        (
            "segmented windows + every slice dimension match reference",
            "yes" if seg_check["ok"] and slices_seg["ok"] and slices_plain["ok"] else "NO",
        ),
        ("load average (1 min) at start / end", f"{load0:.2f} / {load_average():.2f}"),
        ("script wall-clock", f"{wall_s:.1f} s"),
    ]
    print_table(f"lossmon compute benchmark ({'quick' if args.quick else 'full'})", rows)

    q = hist["queries"]

    def lat(kind: str) -> str:
        return (
            f"{q[kind]['median_ms']:.1f} ms (p90 {q[kind]['p90_ms']:.1f}), "
            f"{q[kind]['windows_min_max'][1]} windows, {q[kind]['response_kb_median']:.0f} kB"
        )

    n = q["version"]["n"]
    hist_table: list[tuple[str, str]] = [
        (
            "history: predictions / windows (1h, segmented)",
            f"{hist_loaded.rows:,} / {len(hist_loaded.windows)} "
            f"({args.history_days} days x {args.history_rows}/window)",
        ),
        (
            "history: load / compute pass once (in-process)",
            (
                f"{hist_loaded.seconds:.1f} s / {hist['compute_pass_s']:.2f} s, "
                f"{hist['slice_rows']:,} slice rows"
            ),
        ),
        ("measured in", "in-process TestClient (whole ASGI app)"),
        (f"GET metrics, unfiltered (median of {n})", lat("unfiltered")),
        ("GET ?segment=country:X, target < 100 ms", lat("segment")),
        (f"GET ?model_version={FILTER_VERSION}, target < 100 ms", lat("version")),
        (f"GET ?model_version={FILTER_VERSION}&segment=country:X (on demand)", lat("combination")),
        ("filtered totals match the predictions table", "yes" if hist["ok"] else "NO"),
    ]
    print_table(f"filtered history query, {args.history_days} days of hourly windows", hist_table)

    path = write_results(
        NAME,
        {
            "benchmark": NAME,
            "quick": args.quick,
            "config": {
                "rows": args.rows,
                "windows": args.windows,
                "label_fraction": args.label_fraction,
                "repeats": args.repeats,
                "idle_runs": args.idle_runs,
                "history_days": args.history_days,
                "history_rows_per_window": args.history_rows,
                "requests": args.requests,
                "seed": args.seed,
            },
            "machine": machine_info(),
            "load_average_start_end": [round(load0, 2), round(load_average(), 2)],
            "measured_in": "subprocess (clock inside the child, around the work only)",
            "rows": loaded.rows,
            "labeled": loaded.labeled,
            "load_s": round(loaded.seconds, 2),
            "tables_mb": round(float(table_mb), 1),
            "reference_s": [round(r.data["seconds"], 4) for r in refs],
            "pass_s": [round(r.data["seconds"], 4) for r in passes],
            "reference_median_s": round(ref_s, 4),
            "pass_median_s": round(pass_s, 4),
            "ratio_pass_over_reference": round(ratio, 3),
            "target_ratio": 2.0,
            "pass_peak_rss_mb": round(pass_rss, 1),
            "reference_peak_rss_mb": round(ref_rss, 1),
            "pass_rss_after_imports_mb": round(pass_rss0, 1),
            "reference_rss_after_imports_mb": round(ref_rss0, 1),
            "cli_compute": {
                "output": cli_out,
                "wall_s": round(cli.wall_s, 3),
                "peak_rss_mb": round(cli.peak_rss_mb, 1),
            },
            "idle_pass_ms": {
                "median": round(idle_ms, 2),
                "p90": round(percentile(idle, 90) * 1e3, 2),
                "max": round(max(idle) * 1e3, 2),
                "runs": len(idle),
            },
            "target_idle_ms": 50,
            "check": check,
            "segmented": {
                "versions": dict(zip(VERSIONS, VERSION_SHARES, strict=True)),
                "segment_keys": {k: len(v) for k, v in SEGMENT_VALUES.items()},
                "load_s": round(seg_loaded.seconds, 2),
                "tables_mb": round(float(seg_table_mb), 1),
                "pass_s": [round(r.data["seconds"], 4) for r in seg_passes],
                "pass_median_s": round(seg_s, 4),
                "ratio_over_unsegmented_pass": round(seg_ratio, 3),
                "target_ratio": 4.0,
                "pass_peak_rss_mb": round(seg_rss, 1),
                "check": seg_check,
                "slices": slices_seg,
                "unsegmented_slices": slices_plain,
            },
            "filtered_history": {
                "rows": hist_loaded.rows,
                "windows": len(hist_loaded.windows),
                "load_s": round(hist_loaded.seconds, 2),
                **hist,
                "target_ms": 100,
            },
            "wall_clock_s": round(wall_s, 1),
        },
    )
    print(f"results: {path}")
    return 0 if all_ok and hist["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
