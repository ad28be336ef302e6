"""Cost as history grows: steady and late-label passes at H = 1M and 10M predictions,
storage per row, and a retention run under load (issue 13).

    .venv/bin/python bench/scale.py                 # H = 1M, then H = 10M (heavy: once)
    .venv/bin/python bench/scale.py --sizes 1000000 # one size
    .venv/bin/python bench/scale.py --quick         # smoke run, ~1 minute
    .venv/bin/python bench/scale.py --only retention --sizes 10000000  # load + retention only

Per size, a fresh PostgreSQL database (dropped at the end):

- load: hourly windows of 50k binary predictions, 90 % labeled, generated with numpy and
  loaded with COPY (actuals carry their prediction's window, as the service stores a
  matched actual), then every window computed once (the history's metrics), VACUUM
  ANALYZE, CHECKPOINT. Database bytes per prediction, per actual and per million
  predictions (both tables with their indexes) are printed.
- steady pass: one new hour (50k predictions + 45k labels) through the ingestion
  service, then app.windows.service.compute_pass (1 window).
- late-label pass: 5,000 labels for unlabeled predictions of the oldest 24 windows
  through the ingestion service, then compute_pass (24 windows).
  Each pass runs in a FRESH process (`--child`; 3 of each, median; every size is loaded
  first and the fresh rounds alternate between sizes), and again in one
  LONG-LIVED process after 10 passes (pool connections and psycopg's prepared
  statements warm). The pass time divided by the windows it computed is the per-window
  cost; each child also times a fixed reference (the window math over 50k synthetic
  rows) right before its pass, so runs at different load can be compared: cost /
  reference.
- retention: retention_days set so that the oldest windows holding ~5M rows (at 10M;
  ~half the rows at smaller sizes) are past the horizon, then app.retention's run, timed,
  while another thread keeps reading the metric history and ingesting predictions
  (latencies reported).

Targets (issue 13): per-window cost at 10M <= 1.2 x at 1M for both passes (compare the
cost / reference ratios); retention of 5M rows < 10 s with reads and ingest answering.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
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
    print_table,
    write_results,
)

NAME = "scale"
MODEL_ID = "bench"
HOUR = 3600
ROWS_PER_WINDOW = 50_000
LABEL_FRACTION = 0.9
LATE_LABELS = 5_000
LATE_WINDOWS = 24
WARM_PASSES = 10  # passes before the long-lived process's measured ones
MEASURED_ROUNDS = 3
# Fresh-process passes per kind (median reported): one sample on a shared machine is
# noise (a single fresh late pass once read 1.8x slower at 10M than at 1M, then 1.3x).
FRESH_REPEATS = 3
RETENTION_TARGET_ROWS = 5_000_000
SEED = 13


def _now_hour() -> int:
    return int(time.time()) // HOUR * HOUR


# ------------------------------------------------------------------------------ load


def load(db: Database, *, rows: int, base: int) -> dict[str, Any]:
    """Model via the registry; predictions and actuals via COPY; every window computed."""
    from app.config import load_settings
    from app.db import create_engine_for, make_sessionmaker, session_scope
    from app.registry import service as model_service
    from app.registry.schemas import ModelIn
    from app.windows.service import compute_pass

    settings = load_settings(database_url=db.sa_url, compute_batch_windows=8)
    engine = create_engine_for(settings)
    with session_scope(make_sessionmaker(engine)) as session:
        model_service.upsert_model(
            session=session, model_id=MODEL_ID, body=ModelIn(window="1h"), now=datetime.now(UTC)
        )

    t0 = time.perf_counter()
    rng = np.random.default_rng(SEED)
    windows = rows // ROWS_PER_WINDOW
    window_start = base + (np.arange(rows, dtype=np.int64) // ROWS_PER_WINDOW) * HOUR
    ts_us = window_start * 1_000_000 + rng.integers(0, HOUR * 1_000_000, size=rows)
    scores = rng.beta(2.0, 5.0, size=rows)
    has_label = rng.random(rows) < LABEL_FRACTION
    labels = (rng.random(rows) < scores).astype(np.int64)
    received = int(time.time() * 1e6)
    with psycopg.connect(db.pg_url) as conn, conn.cursor() as cur:
        copy_binary_rows(
            cur,
            model_id=MODEL_ID,
            ts_us=ts_us,
            window_start=window_start,
            scores=scores,
            labels=labels,
            labeled=np.flatnonzero(has_label),
            actual_ts_us=ts_us + 3_600_000_000,
            received_us=received,
        )
        cur.executemany(
            "INSERT INTO dirty_windows (model_id, window_start, generation) VALUES (%s, %s, 1)",
            [(MODEL_ID, base + k * HOUR) for k in range(windows)],
        )
        conn.commit()
    copy_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    result = compute_pass(
        factory=make_sessionmaker(engine),
        read_factory=make_sessionmaker(engine, readonly=True),
        settings=settings,
    )
    compute_s = time.perf_counter() - t1
    engine.dispose()
    with psycopg.connect(db.pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE predictions")
        conn.execute("VACUUM ANALYZE actuals")
        conn.execute("CHECKPOINT")
    # Unlabeled predictions of the oldest windows: the late labels' targets.
    oldest = np.flatnonzero(~has_label & (window_start < base + LATE_WINDOWS * HOUR))
    late_ids = [f"p{i:09d}" for i in rng.permutation(oldest).tolist()]
    return {
        "rows": rows,
        "labeled": int(has_label.sum()),
        "windows": windows,
        "copy_s": copy_s,
        "initial_compute_s": compute_s,
        "initial_computed": result.computed,
        "late_ids": late_ids,
    }


def storage(db: Database) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with psycopg.connect(db.pg_url) as conn:
        for table in ("predictions", "actuals"):
            row = conn.execute(
                "SELECT count(*), pg_relation_size(%s), pg_total_relation_size(%s) FROM " + table,
                (table, table),
            ).fetchone()
            assert row is not None
            n, heap, total = (int(v) for v in row)
            indexes = conn.execute(
                "SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) "
                "FROM pg_index WHERE indrelid = %s::regclass ORDER BY 1",
                (table,),
            ).fetchall()
            out[table] = {
                "rows": n,
                "heap_bytes": heap,
                "total_bytes": total,
                "bytes_per_row": total / max(n, 1),
                "heap_bytes_per_row": heap / max(n, 1),
                "index_bytes_per_row": {name: size / max(n, 1) for name, size in indexes},
            }
    predictions = out["predictions"]["rows"]
    out["bytes_per_million_predictions"] = (
        (out["predictions"]["total_bytes"] + out["actuals"]["total_bytes"]) / predictions * 1e6
    )
    return out


def late_read_plan(db: Database, base: int) -> list[str]:
    """EXPLAIN of the compute pass's read for the oldest 24 windows, as the app sends it."""
    from app.windows import reader

    sql, params = reader.joined_sql(
        pg=True,
        model_id=MODEL_ID,
        window_starts=[base + k * HOUR for k in range(LATE_WINDOWS)],
        start=None,
        end=None,
        model_version=None,
        segments=(),
        multiclass=False,
        with_slices=True,
    )
    with psycopg.connect(db.pg_url) as conn:
        conn.execute("SET enable_nestloop = off")  # as app.windows.reader does
        conn.execute("SET jit = off")
        rows = conn.execute("EXPLAIN " + sql, params).fetchall()
    return [r[0] for r in rows]


# ---------------------------------------------------------------------------- children


def _reference_s() -> float:
    """The window math over 50k synthetic rows: a yardstick of this moment's CPU."""
    from app.windows.reader import JoinedRows
    from app.windows.values import compute_stats

    rng = np.random.default_rng(0)
    n = ROWS_PER_WINDOW
    labels = np.where(rng.random(n) < 0.9, (rng.random(n) < 0.3).astype(float), np.nan)
    rows = JoinedRows(
        window_starts=np.zeros(n, dtype=np.int64),
        scores=rng.random(n),
        labels=labels,
        weights=np.where(np.isnan(labels), np.nan, 1.0),
    )
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        compute_stats(rows, 1e-15)
        best = min(best, time.perf_counter() - t0)
    return best


class Passes:
    """The ingest + compute passes, against one engine (a process's lifetime)."""

    def __init__(self, sa_url: str) -> None:
        from app.config import load_settings
        from app.db import create_engine_for, make_sessionmaker

        self.settings = load_settings(database_url=sa_url)
        self.engine = create_engine_for(self.settings)
        self.factory = make_sessionmaker(self.engine)
        self.read_factory = make_sessionmaker(self.engine, readonly=True)

    def _model(self, session: Any) -> Any:
        """The model's shape, as the API reads it for a write."""
        from app.registry.cache import ModelShape
        from app.registry.models import MonitoredModel

        return ModelShape.of(session.get(MonitoredModel, MODEL_ID))

    def _pass(self) -> tuple[float, int]:
        from app.windows.service import compute_pass

        t0 = time.perf_counter()
        result = compute_pass(
            factory=self.factory, read_factory=self.read_factory, settings=self.settings
        )
        return time.perf_counter() - t0, result.computed

    def steady(self, hour_start: int, tag: str) -> dict[str, Any]:
        from app.db import session_scope
        from app.ingestion import service
        from app.ingestion.columns import PredictionColumns
        from app.ingestion.schemas import ActualIn, PredictionIn

        rng = np.random.default_rng(hash(tag) % 2**32)
        offsets = rng.integers(0, HOUR, size=ROWS_PER_WINDOW)
        scores = rng.beta(2.0, 5.0, size=ROWS_PER_WINDOW)
        preds = [
            PredictionIn(
                prediction_id=f"{tag}-{i}",
                timestamp=datetime.fromtimestamp(hour_start + int(o), UTC),
                score=float(s),
            )
            for i, (o, s) in enumerate(zip(offsets.tolist(), scores.tolist(), strict=True))
        ]
        acts = [
            ActualIn(prediction_id=p.prediction_id, label=int(rng.random() < float(p.score or 0)))
            for p in preds
            if rng.random() < LABEL_FRACTION
        ]
        now_us = int(time.time() * 1e6)
        t0 = time.perf_counter()
        for lo in range(0, len(preds), 10_000):
            with session_scope(self.factory) as session:
                service.ingest_predictions(
                    session=session,
                    model=self._model(session),
                    batch=PredictionColumns.of(preds[lo : lo + 10_000]),
                    now_us=now_us,
                    max_future_s=self.settings.max_future_s,
                )
        for lo in range(0, len(acts), 10_000):
            with session_scope(self.factory) as session:
                service.ingest_actuals(
                    session=session,
                    model=self._model(session),
                    items=acts[lo : lo + 10_000],
                    now_us=now_us,
                    max_future_s=self.settings.max_future_s,
                )
        ingest_s = time.perf_counter() - t0
        reference = _reference_s()
        seconds, computed = self._pass()
        return {
            "ingest_s": ingest_s,
            "pass_s": seconds,
            "computed": computed,
            "reference_s": reference,
        }

    def late(self, ids: Sequence[str]) -> dict[str, Any]:
        from app.db import session_scope
        from app.ingestion import service
        from app.ingestion.schemas import ActualIn

        items = [ActualIn(prediction_id=pid, label=k % 2) for k, pid in enumerate(ids)]
        t0 = time.perf_counter()
        with session_scope(self.factory) as session:
            result = service.ingest_actuals(
                session=session,
                model=self._model(session),
                items=items,
                now_us=int(time.time() * 1e6),
                max_future_s=self.settings.max_future_s,
            )
        ingest_s = time.perf_counter() - t0
        reference = _reference_s()
        seconds, computed = self._pass()
        return {
            "ingest_s": ingest_s,
            "matched": result.matched,
            "pass_s": seconds,
            "computed": computed,
            "reference_s": reference,
        }


def child(spec: dict[str, Any]) -> dict[str, Any]:
    passes = Passes(spec["url"])
    try:
        if spec["kind"] == "steady":
            return passes.steady(spec["hour"], spec["tag"])
        if spec["kind"] == "late":
            return passes.late(spec["ids"])
        # warm: alternate steady and late passes; the last MEASURED_ROUNDS are reported
        rounds = []
        for k, job in enumerate(spec["rounds"]):
            rounds.append(
                {
                    "steady": passes.steady(job["hour"], job["tag"]),
                    "late": passes.late(job["ids"]),
                    "passes_before": 2 * k,
                }
            )
        return {"rounds": rounds}
    finally:
        passes.engine.dispose()


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
        path = f.name
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", path],
            cwd=REPO_DIR,
            capture_output=True,
            text=True,
        )
    finally:
        Path(path).unlink()
    if done.returncode != 0:
        raise RuntimeError(f"child {spec['kind']} failed:\n{done.stdout}\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------- retention


def retention_under_load(db: Database, *, base: int, windows: int, rows: int) -> dict[str, Any]:
    """Expire the oldest windows holding ~RETENTION_TARGET_ROWS rows (at most half the
    history) while a thread reads the history and ingests; all timed."""
    from app.config import load_settings
    from app.db import create_engine_for, make_sessionmaker, session_scope
    from app.ingestion import service as ingest_service
    from app.ingestion.columns import PredictionColumns
    from app.ingestion.schemas import PredictionIn
    from app.registry.cache import ModelShape
    from app.registry.models import MonitoredModel
    from app.retention import service as retention
    from app.windows import service as window_service

    rows_per_window = ROWS_PER_WINDOW * (1 + LABEL_FRACTION)
    expire = int(min(RETENTION_TARGET_ROWS, rows * (1 + LABEL_FRACTION) / 2) / rows_per_window)
    expire = max(1, expire)
    fake_now = base + expire * HOUR + 86_400  # retention_days=1: `expire` windows past it
    settings = load_settings(database_url=db.sa_url)
    engine = create_engine_for(settings)
    factory = make_sessionmaker(engine)
    with session_scope(factory) as session:
        session.get(MonitoredModel, MODEL_ID).retention_days = 1  # type: ignore[union-attr]

    reads: list[float] = []
    writes: list[float] = []
    errors: list[str] = []
    stop = threading.Event()
    started = threading.Event()

    def load_thread() -> None:
        k = 0
        hour = _now_hour() - HOUR
        while not stop.is_set():
            try:
                t0 = time.perf_counter()
                with session_scope(make_sessionmaker(engine, readonly=True)) as session:
                    model = session.get(MonitoredModel, MODEL_ID)
                    assert model is not None
                    window_service.history(session=session, model=model, start=None, end=None)
                reads.append(time.perf_counter() - t0)
                items = [
                    PredictionIn(
                        prediction_id=f"during-{k}-{i}",
                        timestamp=datetime.fromtimestamp(hour + i, UTC),
                        score=0.3,
                    )
                    for i in range(1_000)
                ]
                t0 = time.perf_counter()
                with session_scope(factory) as session:
                    model = session.get(MonitoredModel, MODEL_ID)
                    assert model is not None
                    ingest_service.ingest_predictions(
                        session=session,
                        model=ModelShape.of(model),
                        batch=PredictionColumns.of(items),
                        now_us=int(time.time() * 1e6),
                        max_future_s=settings.max_future_s,
                    )
                writes.append(time.perf_counter() - t0)
            except Exception as exc:  # reported, not raised: the figure is the answer
                errors.append(repr(exc))
            started.set()
            k += 1

    thread = threading.Thread(target=load_thread)
    thread.start()
    started.wait(60)
    n_reads, n_writes = len(reads), len(writes)
    with psycopg.connect(db.pg_url) as conn:
        wal_before = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    t0 = time.perf_counter()
    report = retention.run_retention(factory=factory, clock=lambda: fake_now)
    seconds = time.perf_counter() - t0
    during_reads, during_writes = reads[n_reads:], writes[n_writes:]
    stop.set()
    thread.join()
    with psycopg.connect(db.pg_url) as conn:
        metrics_kept = conn.execute("SELECT count(*) FROM window_metrics").fetchone()
        # WAL of the whole run (the concurrent ingest's share is small: ~1k rows a step).
        wal = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)",
            (wal_before[0] if wal_before else "0/0",),
        ).fetchone()
    engine.dispose()
    return {
        "windows_expired": expire,
        "predictions_deleted": report.predictions,
        "actuals_deleted": report.actuals,
        "rows_deleted": report.predictions + report.actuals,
        "seconds": seconds,
        "rows_per_second": (report.predictions + report.actuals) / seconds,
        "window_metrics_kept": int(metrics_kept[0]) if metrics_kept else None,
        "wal_mb": float(wal[0]) / 1e6 if wal else None,
        "reads_during": len(during_reads),
        "read_max_s": max(during_reads, default=None),
        "read_median_s": median(during_reads) if during_reads else None,
        "ingests_during": len(during_writes),
        "ingest_1k_max_s": max(during_writes, default=None),
        "ingest_1k_median_s": median(during_writes) if during_writes else None,
        "errors": errors[:5],
    }


# ------------------------------------------------------------------------------ main


def per_window(run: dict[str, Any]) -> float:
    return float(run["pass_s"]) / max(int(run["computed"]), 1)


def normalised(run: dict[str, Any]) -> float:
    return per_window(run) / float(run["reference_s"])


def run_retention_only(rows: int) -> dict[str, Any]:
    """Load (COPY + initial compute) and the retention run: minutes instead of the hour
    the passes take at 10M, to measure retention alone."""
    windows = rows // ROWS_PER_WINDOW
    base = _now_hour() - (windows + 4) * HOUR
    with fresh_database(f"lossmon_bench_scale_{rows}") as db:
        print(f"[{rows:,}] loading ({windows} windows) ...", flush=True)
        loaded = load(db, rows=rows, base=base)
        loaded.pop("late_ids")
        sizes = storage(db)
        print(f"[{rows:,}] retention under load ...", flush=True)
        retention = retention_under_load(db, base=base, windows=windows, rows=rows)
    return {
        "rows": rows,
        "load": loaded,
        "storage": sizes,
        "retention": retention,
        "loadavg_after": load_average(),
    }


@dataclass
class Loaded:
    """One size's database, loaded, with the hours and late-label batches its passes use."""

    rows: int
    db: Database
    base: int
    loaded: dict[str, Any]
    sizes: dict[str, Any]
    plan: list[str]
    hours: list[int]
    batches: list[list[str]]


def prepare(stack: ExitStack, rows: int, *, quick: bool) -> Loaded:
    windows = rows // ROWS_PER_WINDOW
    rounds_total = FRESH_REPEATS + 1 + WARM_PASSES // 2 + MEASURED_ROUNDS
    # The newest window loaded ends far enough back that every later hour is in the past.
    base = _now_hour() - (windows + rounds_total + 4) * HOUR
    db = stack.enter_context(fresh_database(f"lossmon_bench_scale_{rows}"))
    print(f"[{rows:,}] loading ({windows} windows) ...", flush=True)
    loaded = load(db, rows=rows, base=base)
    late_ids: list[str] = loaded.pop("late_ids")
    per_pass = 1_000 if quick else LATE_LABELS
    if len(late_ids) < per_pass * rounds_total:
        raise RuntimeError(f"only {len(late_ids)} unlabeled predictions to label late")
    return Loaded(
        rows=rows,
        db=db,
        base=base,
        loaded=loaded,
        sizes=storage(db),
        plan=late_read_plan(db, base),
        hours=[base + (windows + k) * HOUR for k in range(rounds_total)],
        batches=[late_ids[k * per_pass : (k + 1) * per_pass] for k in range(rounds_total)],
    )


def fresh_passes(k: int, size: Loaded) -> tuple[dict[str, Any], dict[str, Any]]:
    """Round k's fresh steady and late pass on one size, each in its own process."""
    url = size.db.sa_url
    steady = run_child({"kind": "steady", "url": url, "hour": size.hours[k], "tag": f"fresh-{k}"})
    late = run_child({"kind": "late", "url": url, "ids": size.batches[k]})
    return steady, late


def finish(size: Loaded, fresh: list[tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """The long-lived process's passes, then retention, on one size."""
    rows = size.rows
    print(f"[{rows:,}] long-lived process: {WARM_PASSES} passes, then measured ...", flush=True)
    warm = run_child(
        {
            "kind": "warm",
            "url": size.db.sa_url,
            "rounds": [
                {"hour": size.hours[k], "tag": f"warm-{k}", "ids": size.batches[k]}
                for k in range(FRESH_REPEATS, len(size.hours))
            ],
        }
    )
    measured = [r for r in warm["rounds"] if r["passes_before"] >= WARM_PASSES]
    print(f"[{rows:,}] retention under load ...", flush=True)
    windows = rows // ROWS_PER_WINDOW
    retention = retention_under_load(size.db, base=size.base, windows=windows, rows=rows)
    return {
        "rows": rows,
        "load": size.loaded,
        "storage": size.sizes,
        "late_read_plan": size.plan,
        "fresh": {"steady": [s for s, _ in fresh], "late": [late for _, late in fresh]},
        "warm": {
            "steady": [r["steady"] for r in measured],
            "late": [r["late"] for r in measured],
        },
        "retention": retention,
        "loadavg_after": load_average(),
    }


def run_sizes(sizes: Sequence[int], *, quick: bool) -> dict[int, dict[str, Any]]:
    """Every size loaded first, then the fresh passes interleaved across sizes (round k
    on 1M, then on 10M, ...), so a busy moment of this shared machine hits both sizes
    instead of one; then per size the long-lived passes and retention."""
    with ExitStack() as stack:
        loaded = [prepare(stack, rows, quick=quick) for rows in sizes]
        fresh: dict[int, list[tuple[dict[str, Any], dict[str, Any]]]] = {n: [] for n in sizes}
        for k in range(FRESH_REPEATS):
            for size in loaded:
                print(f"[{size.rows:,}] fresh-process passes, round {k + 1} ...", flush=True)
                fresh[size.rows].append(fresh_passes(k, size))
        return {size.rows: finish(size, fresh[size.rows]) for size in loaded}


def summary(result: dict[str, Any]) -> dict[str, float]:
    out = {}
    for mode in ("fresh", "warm"):
        for kind in ("steady", "late"):
            runs = result[mode][kind]
            runs = runs if isinstance(runs, list) else [runs]
            if runs:
                out[f"{mode}_{kind}_per_window_s"] = median([per_window(r) for r in runs])
                out[f"{mode}_{kind}_per_window_ref"] = median([normalised(r) for r in runs])
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--quick", action="store_true", help="H = 200k only (smoke run)")
    p.add_argument("--only", choices=["retention"], help="load and run only this part (no passes)")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        spec = json.loads(Path(args.child).read_text())
        print(json.dumps(child(spec)))
        return 0
    sizes = [200_000] if args.quick else args.sizes
    results: dict[str, Any] = {
        "machine": machine_info(),
        "loadavg_before": Path("/proc/loadavg").read_text().strip(),
        "sizes": {},
    }
    passes = {} if args.only == "retention" else run_sizes(sizes, quick=args.quick)
    for rows in sizes:
        if args.only == "retention":
            result = run_retention_only(rows)
            result["summary"] = {}
        else:
            result = passes[rows]
            result["summary"] = summary(result)
        results["sizes"][str(rows)] = result
        s, st, r = result["summary"], result["storage"], result["retention"]
        print_table(
            f"H = {rows:,} predictions (load average now {result['loadavg_after']:.1f})",
            [
                (
                    "load: COPY s / initial compute s",
                    f"{result['load']['copy_s']:.1f} / {result['load']['initial_compute_s']:.1f}",
                ),
                (
                    "bytes per prediction (heap + indexes)",
                    f"{st['predictions']['bytes_per_row']:.0f}",
                ),
                ("bytes per actual (heap + indexes)", f"{st['actuals']['bytes_per_row']:.0f}"),
                (
                    "MB per million predictions (90% labeled)",
                    f"{st['bytes_per_million_predictions'] / 1e6:.0f}",
                ),
                *((f"{k} ", f"{v:.4f}" if k.endswith("_s") else f"{v:.1f}") for k, v in s.items()),
                ("retention: rows deleted", f"{r['rows_deleted']:,}"),
                ("retention: seconds", f"{r['seconds']:.2f}"),
                ("retention: WAL MB written", f"{r['wal_mb'] or 0:.0f}"),
                (
                    "retention: reads / ingests during",
                    f"{r['reads_during']} / {r['ingests_during']}",
                ),
                (
                    "retention: max read / max ingest(1k) s",
                    f"{r['read_max_s'] or 0:.3f} / {r['ingest_1k_max_s'] or 0:.3f}",
                ),
            ],
        )
        if "late_read_plan" in result:
            print("late-label read plan (24 windows):")
            print("\n".join("  " + line for line in result["late_read_plan"]))
    if len(results["sizes"]) >= 2 and not args.only:
        small, large = (
            results["sizes"][str(n)]["summary"] for n in sorted(sizes)[:1] + sorted(sizes)[-1:]
        )
        ratios = {k: large[k] / small[k] for k in large if k.endswith("_ref") and small.get(k)}
        results["ratios_large_over_small"] = ratios
        print_table(
            f"per-window cost / reference, H = {max(sizes):,} over H = {min(sizes):,} "
            "(target <= 1.2)",
            [(k, f"{v:.2f}") for k, v in ratios.items()],
        )
    results["loadavg_after"] = Path("/proc/loadavg").read_text().strip()
    print(f"load average before: {results['loadavg_before']}; after: {results['loadavg_after']}")
    name = f"{NAME}-{args.only}" if args.only else NAME
    print(f"written {write_results(name, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
