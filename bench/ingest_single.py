"""Single-prediction POSTs under concurrency: `lossmon serve` vs a bare FastAPI + psycopg
endpoint (bench/reference_single_app.py), both on PostgreSQL, driven by wrk.

    .venv/bin/python bench/ingest_single.py            # 64 and 8 connections, 20 s each
    .venv/bin/python bench/ingest_single.py --quick    # 5 s each

Everything is started here: a fresh PostgreSQL database (dropped at the end), `lossmon
serve --no-scheduler` with its production defaults (workers, pool) and an ingest API key,
and the reference app (one uvicorn process). wrk (installed with apt-get if missing) sends
one prediction per POST, every id unique (bench/ingest_single.lua), all in one hourly
window: the worst case for anything that serialises writers of one window. Phases are
interleaved (reference, lossmon, at 64 then 8 connections). After each phase the ids that
got a 2xx are checked against the table: each acknowledged id stored exactly once.

Targets (issue 10): at 64 connections lossmon/reference req/s >= 0.5, lossmon p99 <=
max(50 ms, 1.5 x reference p99), 0 non-2xx; at 8 connections lossmon p99 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _common import (
    BENCH_DIR,
    REPO_DIR,
    RESULTS_DIR,
    Database,
    create_key,
    free_port,
    fresh_database,
    load_average,
    machine_info,
    print_table,
    stop_server,
    write_results,
)

from app import devserver

NAME = "ingest_single"
MODEL_ID = "bench"
REFERENCE_MODEL_ID = "reference"  # bench/reference_single_app.py writes its rows here
LUA = BENCH_DIR / "ingest_single.lua"


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("wrk not found: installing it with apt-get", flush=True)
    subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False)
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "update", "-q"], check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is needed (apt-get install wrk)")
    return found


def start_reference(db: Database, log_path: Path) -> devserver.ServerProcess:
    port = free_port()
    log = log_path.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "bench.reference_single_app:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        env={**os.environ, "LOSSMON_BENCH_REF_PG_URL": db.pg_url},
        cwd=REPO_DIR,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"reference exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return devserver.ServerProcess(url, process, log_path)
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    devserver.kill(process)
    raise RuntimeError("reference did not start")


def run_wrk(
    wrk: str,
    *,
    url: str,
    model_id: str,
    connections: int,
    seconds: float,
    run: str,
    key: str | None,
    acked_file: Path,
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_RUN": run,
        "BENCH_PATH": f"/v1/models/{model_id}/predictions",
        "ACKED_FILE": str(acked_file),
    }
    if key:
        env["BENCH_AUTH"] = key
    out = subprocess.run(
        [
            wrk,
            "-t",
            "2",
            "-c",
            str(connections),
            "-d",
            f"{seconds:g}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(x for x in out.stdout.splitlines() if x.startswith("JSON "))
    figures: dict[str, Any] = json.loads(line[5:])
    figures["req_per_s"] = figures["requests"] / (figures["duration_us"] / 1e6)
    figures["ok"] = figures["requests"] - figures["non2xx"]
    return figures


def check_stored(db: Database, model_id: str, run: str, acked_file: Path) -> dict[str, int]:
    """Every acknowledged id stored exactly once (the primary key forbids more than one
    row; a missing one would be a lie of a 2xx). Unacknowledged but stored: requests in
    flight when wrk stopped."""
    acked = acked_file.read_text().split()
    with psycopg.connect(db.pg_url) as conn:
        rows = conn.execute(
            "SELECT prediction_id, count(*) FROM predictions WHERE model_id = %s "
            "AND prediction_id LIKE %s GROUP BY prediction_id",
            (model_id, f"{run}-%"),
        ).fetchall()
    stored = {pid: n for pid, n in rows}
    return {
        "acked": len(acked),
        "acked_distinct": len(set(acked)),
        "acked_missing": sum(1 for a in set(acked) if a not in stored),
        "stored_more_than_once": sum(1 for n in stored.values() if n > 1),
        "stored_unacked": len(set(stored) - set(acked)),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="per phase (default 20)")
    p.add_argument("--connections", default="64,8", help="comma-separated (default 64,8)")
    p.add_argument(
        "--workers", type=int, default=None, help="lossmon serve --workers (default: its own)"
    )
    p.add_argument("--database", default="lossmon_bench_single", help="scratch database name")
    p.add_argument("--quick", action="store_true", help="5 s phases")
    args = p.parse_args(argv)
    if args.quick:
        args.seconds = 5.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wrk = ensure_wrk()
    load0 = load_average()
    connections = [int(c) for c in args.connections.split(",")]
    results: dict[str, dict[str, Any]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="lossmon-bench-single-"))
    tag = f"{int(time.time())}"
    serve_args: tuple[str, ...] = ("--no-scheduler",)
    with fresh_database(args.database) as db:
        key = create_key(db, tmp, "ingest")
        admin = create_key(db, tmp, "admin")
        lossmon = devserver.start_serve(
            db.sa_url,
            workdir=tmp,
            log_path=RESULTS_DIR / f"{NAME}-server.log",
            # A serving fleet's one key sends thousands of requests a second.
            extra_env={"LOSSMON_RATE_LIMIT": "10000000/minute", "LOSSMON_LOG_LEVEL": "WARNING"},
            args=serve_args,
            workers=args.workers,
            timeout_s=120,
        )
        reference = start_reference(db, RESULTS_DIR / f"{NAME}-reference.log")
        try:
            with httpx.Client(
                base_url=lossmon.url, timeout=30, headers={"Authorization": f"Bearer {admin}"}
            ) as c:
                for model_id in (MODEL_ID, REFERENCE_MODEL_ID):
                    c.put(f"/v1/models/{model_id}", json={"window": "1h"}).raise_for_status()
            for conns in connections:
                for name, server, model_id, auth in (
                    ("reference", reference, REFERENCE_MODEL_ID, None),
                    ("lossmon", lossmon, MODEL_ID, key),
                ):
                    run = f"{tag}{name[0]}{conns}"
                    acked_file = tmp / f"{run}.acked"
                    # Warm-up (connections, caches, JIT of nothing): 1 s, not counted.
                    run_wrk(
                        wrk,
                        url=server.url,
                        model_id=model_id,
                        connections=conns,
                        seconds=1,
                        run=f"w{run}",
                        key=auth,
                        acked_file=acked_file,
                    )
                    figures = run_wrk(
                        wrk,
                        url=server.url,
                        model_id=model_id,
                        connections=conns,
                        seconds=args.seconds,
                        run=run,
                        key=auth,
                        acked_file=acked_file,
                    )
                    figures.update(check_stored(db, model_id, run, acked_file))
                    results[f"{name}@{conns}"] = figures
                    print(
                        f"  {name:>9} @ {conns:>2} conn: {figures['req_per_s']:>7,.0f} req/s  "
                        f"p50 {figures['p50_us'] / 1e3:6.1f} ms  p99 {figures['p99_us'] / 1e3:6.1f}"
                        f" ms  non-2xx {figures['non2xx']}",
                        flush=True,
                    )
        finally:
            stop_server(lossmon)
            devserver.terminate(reference.process)
    shutil.rmtree(tmp, ignore_errors=True)

    rows: list[tuple[str, str]] = []
    verdicts: dict[str, bool] = {}
    integrity = True
    for conns in connections:
        ref, lm = results[f"reference@{conns}"], results[f"lossmon@{conns}"]
        ratio = lm["req_per_s"] / ref["req_per_s"]
        for name, f in (("reference", ref), ("lossmon", lm)):
            rows.append(
                (
                    f"{name} @ {conns} conn: req/s, p50 / p99 ms, non-2xx",
                    f"{f['req_per_s']:,.0f}, {f['p50_us'] / 1e3:.1f} / {f['p99_us'] / 1e3:.1f},"
                    f" {f['non2xx']}",
                )
            )
            ok = f["acked_missing"] == 0 and f["stored_more_than_once"] == 0
            ok = ok and f["acked"] == f["acked_distinct"] == f["ok"]
            integrity = integrity and ok
            rows.append(
                (
                    f"{name} @ {conns} conn: acked / missing / doubled / unacked-stored",
                    f"{f['acked']} / {f['acked_missing']} / {f['stored_more_than_once']} / "
                    f"{f['stored_unacked']}",
                )
            )
        rows.append((f"ratio lossmon / reference @ {conns} conn", f"{ratio:.3f}"))
        p99_ms = lm["p99_us"] / 1e3
        if conns == 64:
            bound = max(50.0, 1.5 * ref["p99_us"] / 1e3)
            verdicts["64 conn: ratio >= 0.5"] = ratio >= 0.5
            verdicts[f"64 conn: p99 <= {bound:.0f} ms"] = p99_ms <= bound
            verdicts["64 conn: 0 non-2xx"] = lm["non2xx"] == 0 and lm["connect_errors"] == 0
        if conns == 8:
            verdicts["8 conn: p99 <= 50 ms"] = p99_ms <= 50.0
    verdicts["every acknowledged id stored exactly once"] = integrity
    for what, ok in verdicts.items():
        rows.append((f"target: {what}", "met" if ok else "NOT MET"))
    rows.append(("load average (1 min) at start / end", f"{load0:.2f} / {load_average():.2f}"))
    print_table(f"lossmon single-prediction ingest ({args.seconds:g} s per phase)", rows)
    path = write_results(
        NAME,
        {
            "benchmark": NAME,
            "seconds": args.seconds,
            "machine": machine_info(),
            "load_average_start_end": [round(load0, 2), round(load_average(), 2)],
            "phases": results,
            "targets": verdicts,
        },
    )
    print(f"results: {path}")
    return 0 if integrity else 1


if __name__ == "__main__":
    sys.exit(main())
