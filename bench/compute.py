"""Compute pass cost: one pass over N labeled predictions vs reading + log loss by hand.

    .venv/bin/python bench/compute.py            # 1.2M predictions in 24 hourly windows
    .venv/bin/python bench/compute.py --quick    # smoke run, a few seconds

Everything is started here: a fresh PostgreSQL database (dropped at the end), loaded
directly with COPY (not over HTTP), one binary model, its windows marked dirty with
`INSERT INTO dirty_windows`, then VACUUM ANALYZE (the steady state autovacuum reaches).

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

Also: `lossmon compute` end to end (CLI subprocess: start-up + schema check + pass),
and the idle pass (no dirty windows, at this history size), in-process, median of
`--idle-runs`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from _common import (
    REPO_DIR,
    Database,
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
COPY_CHUNK_ROWS = 100_000

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


def load(db: Database, *, rows: int, windows: int, label_fraction: float, seed: int) -> Loaded:
    """Model via the app's registry; predictions + actuals via COPY; windows marked dirty."""
    from app.config import load_settings
    from app.db import create_engine_for, make_sessionmaker, session_scope
    from app.models import service as model_service
    from app.models.schemas import ModelIn

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

    with psycopg.connect(db.pg_url) as conn, conn.cursor() as cur:
        with cur.copy(
            "COPY predictions (model_id, prediction_id, ts_us, window_start, score, "
            "model_version, segments, received_us) FROM STDIN"
        ) as copy:
            for lo in range(0, rows, COPY_CHUNK_ROWS):
                hi = min(lo + COPY_CHUNK_ROWS, rows)
                buf = io.StringIO()
                buf.writelines(
                    f'{MODEL_ID}\tp{i:09d}\t{t}\t{w}\t{s!r}\tv1\t{{"country": "DE"}}'
                    f"\t{received_us}\n"
                    for i, t, w, s in zip(
                        range(lo, hi),
                        ts_us[lo:hi].tolist(),
                        window_start[lo:hi].tolist(),
                        scores[lo:hi].tolist(),
                        strict=True,
                    )
                )
                copy.write(buf.getvalue())
        labeled_idx = np.flatnonzero(has_label)
        with cur.copy(
            "COPY actuals (model_id, prediction_id, label, weight, ts_us, received_us, pending) "
            "FROM STDIN"
        ) as copy:
            for lo in range(0, labeled_idx.size, COPY_CHUNK_ROWS):
                idx = labeled_idx[lo : lo + COPY_CHUNK_ROWS]
                buf = io.StringIO()
                buf.writelines(
                    f"{MODEL_ID}\tp{i:09d}\t{y}\t1.0\t{t}\t{received_us}\tf\n"
                    for i, y, t in zip(
                        idx.tolist(),
                        labels[idx].tolist(),
                        (ts_us[idx] + delay_us[idx]).tolist(),
                        strict=True,
                    )
                )
                copy.write(buf.getvalue())
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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=1_200_000, help="predictions (default 1.2M)")
    p.add_argument("--windows", type=int, default=24, help="hourly windows they span")
    p.add_argument("--label-fraction", type=float, default=0.9, help="share with an actual")
    p.add_argument("--repeats", type=int, default=3, help="pass / reference runs (median)")
    p.add_argument("--idle-runs", type=int, default=20, help="idle passes (median)")
    p.add_argument("--seed", type=int, default=20261120)
    p.add_argument("--database", default="lossmon_bench_compute", help="scratch database name")
    p.add_argument("--quick", action="store_true", help="smoke run: 60,000 rows, 6 windows")
    p.add_argument("--child", choices=["pass", "reference"], help=argparse.SUPPRESS)
    p.add_argument("--child-url", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.windows, args.idle_runs = 60_000, 6, 5
    return args


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
    with fresh_database(args.database) as db:
        print(f"loading {args.rows:,} predictions in {args.windows} windows ...", flush=True)
        loaded = load(
            db,
            rows=args.rows,
            windows=args.windows,
            label_fraction=args.label_fraction,
            seed=args.seed,
        )
        print(
            f"loaded {loaded.rows:,} predictions, {loaded.labeled:,} actuals, "
            f"{len(loaded.windows)} dirty windows in {loaded.seconds:.1f}s",
            flush=True,
        )
        passes: list[ChildRun] = []
        refs: list[ChildRun] = []
        for r in range(args.repeats):
            if r > 0:
                mark_dirty(db, loaded.windows)
            order = ("reference", "pass") if r % 2 == 0 else ("pass", "reference")
            for kind in order:
                run = run_self_child(kind, db)
                (passes if kind == "pass" else refs).append(run)
                print(f"  repeat {r + 1}: {kind:<9} {run.data['seconds']:.3f}s", flush=True)
                if kind == "pass" and run.data["computed"] != len(loaded.windows):
                    raise RuntimeError(f"pass computed {run.data['computed']} windows")
        if scalar(db, "SELECT count(*) FROM dirty_windows"):
            raise RuntimeError("dirty windows left after the pass")

        mark_dirty(db, loaded.windows)
        env = {**os.environ, "LOSSMON_DATABASE_URL": db.sa_url}
        cli_out, cli = run_child([sys.executable, "-m", "app.cli", "compute"], env=env)
        cli_out = cli_out.strip().splitlines()[-1]
        print(f"  lossmon compute: {cli_out} ({cli.wall_s:.2f}s wall)", flush=True)

        idle = idle_passes(db, args.idle_runs)
        check = check_metrics(db, loaded, refs[0].data["log_loss"])
        table_mb = scalar(
            db,
            "SELECT (pg_total_relation_size('predictions') "
            "+ pg_total_relation_size('actuals')) / 1e6",
        )

    pass_s = median([r.data["seconds"] for r in passes])
    ref_s = median([r.data["seconds"] for r in refs])
    ratio = pass_s / ref_s
    idle_ms = median(idle) * 1e3
    wall_s = time.perf_counter() - wall0
    pass_rss = median([r.peak_rss_mb for r in passes])
    ref_rss = median([r.peak_rss_mb for r in refs])
    pass_rss0 = median([r.data["rss_after_imports_mb"] for r in passes])
    ref_rss0 = median([r.data["rss_after_imports_mb"] for r in refs])

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
            f"{ref_s:.3f} s  [" + ", ".join(f"{r.data['seconds']:.3f}" for r in refs) + "]",
        ),
        (
            f"compute pass, all windows (median of {len(passes)})",
            f"{pass_s:.3f} s  [" + ", ".join(f"{r.data['seconds']:.3f}" for r in passes) + "]",
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
        ("load average (1 min) at start / end", f"{load0:.2f} / {load_average():.2f}"),
        ("script wall-clock", f"{wall_s:.1f} s"),
    ]
    print_table(f"lossmon compute benchmark ({'quick' if args.quick else 'full'})", rows)

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
            "wall_clock_s": round(wall_s, 1),
        },
    )
    print(f"results: {path}")
    return 0 if check["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
