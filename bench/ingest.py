"""Ingest throughput: predictions/s over HTTP vs the raw INSERT ... unnest reference.

    .venv/bin/python bench/ingest.py            # 200,000 rows, 2 clients, 5 runs (~35 s)
    .venv/bin/python bench/ingest.py --quick    # smoke run, a few seconds

Everything is started here: a fresh PostgreSQL database (dropped at the end), a real
`lossmon serve --no-scheduler` subprocess (production defaults), the clients. Phases,
each starting from truncated `predictions`/`dirty_windows`/`window_changes` tables after a
CHECKPOINT, each preceded by an untimed warm-up batch per worker (to another model,
truncated before timing):

1. HTTP: N threads with one httpx.Client each POST prebuilt JSON bodies of B predictions
   to /v1/models/bench/predictions (batches handed out from a shared queue).
2. raw, N connections: the same rows, same batches, the same INSERT ... unnest the
   service sends with the same parameters (app/ingestion/bulk.py: pg_insert_predictions_sql
   and pg_prediction_params, packed per batch inside the timed loop), one transaction
   per batch, N threads with one psycopg connection each. No HTTP, no validation, no
   model guard, no window change log.
3. raw, 1 connection: the same, single-threaded.

The three phases run `--repeats` times, interleaved (HTTP, raw N, raw 1, HTTP, ...), so
a noisy neighbour hits all of them alike; medians are reported. The figure of merit is
HTTP rows/s / raw rows/s at the same concurrency (target >= 0.8).
Rows are spread over `--hours` hourly windows in time order, so concurrent batches
touch the same dirty window (as two producers of one model would).
"""

from __future__ import annotations

import argparse
import json
import queue
import resource
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from _common import (
    RESULTS_DIR,
    Database,
    checkpoint,
    create_key,
    fresh_database,
    load_average,
    machine_info,
    median,
    percentile,
    postgres_cpu_seconds,
    print_table,
    process_tree_cpu_seconds,
    start_server,
    stop_server,
    write_results,
)

from app.ingestion import bulk, pg_arrays
from app.ingestion.service import window_start_of

NAME = "ingest"
MODEL_ID = "bench"
WARMUP_MODEL_ID = "bench-warmup"
WINDOW_SECONDS = 3600
BASE_EPOCH = int(datetime(2026, 11, 20, tzinfo=UTC).timestamp())
SEGMENTS = {"country": "DE"}


@dataclass(frozen=True)
class Batch:
    body: bytes  # the HTTP request body
    # The column arrays the service would build from it (sorted by prediction_id).
    prediction_ids: list[str]
    ts_us: list[int]
    window_starts: list[int]
    scores: list[float | None]
    model_versions: list[str]
    segments: list[str | None]

    def __len__(self) -> int:
        return len(self.prediction_ids)


def build_batches(*, rows: int, batch_size: int, hours: int, seed: int, prefix: str) -> list[Batch]:
    rng = np.random.default_rng(seed)
    span_us = hours * WINDOW_SECONDS * 1_000_000
    ts_all = BASE_EPOCH * 1_000_000 + np.sort(rng.integers(0, span_us, size=rows))
    scores_all = rng.random(rows)
    ts_text = np.datetime_as_string(ts_all.astype("datetime64[us]"), unit="us")
    segments_text = json.dumps(SEGMENTS, sort_keys=True)  # what the service stores
    batches = []
    for lo in range(0, rows, batch_size):
        hi = min(lo + batch_size, rows)
        ids = [f"{prefix}{i:09d}" for i in range(lo, hi)]  # zero-padded: already sorted
        ts = [int(t) for t in ts_all[lo:hi]]
        scores: list[float | None] = [float(s) for s in scores_all[lo:hi]]
        items = [
            {
                "prediction_id": pid,
                "timestamp": f"{stamp}Z",
                "score": score,
                "model_version": "v1",
                "segments": SEGMENTS,
            }
            for pid, stamp, score in zip(ids, ts_text[lo:hi], scores, strict=True)
        ]
        batches.append(
            Batch(
                body=json.dumps({"predictions": items}).encode(),
                prediction_ids=ids,
                ts_us=ts,
                window_starts=[window_start_of(t, WINDOW_SECONDS) for t in ts],
                scores=scores,
                model_versions=["v1"] * len(ids),
                segments=[segments_text] * len(ids),
            )
        )
    return batches


# A worker is opened (connection, warm-up) before the clock starts; it returns a send
# function (batch -> rows inserted) and a close function.
Sender = Callable[[Batch], int]
WorkerFactory = Callable[[int], tuple[Sender, Callable[[], None]]]


@dataclass
class PhaseResult:
    name: str
    workers: int
    rows_sent: int
    rows_inserted: int
    seconds: float
    latencies_s: list[float] = field(repr=False)
    cpu_s: dict[str, float]
    rows_in_table: int = -1

    @property
    def rows_per_s(self) -> float:
        return self.rows_sent / self.seconds

    def summary(self) -> dict[str, Any]:
        return {
            "workers": self.workers,
            "rows_sent": self.rows_sent,
            "rows_inserted": self.rows_inserted,
            "rows_in_table": self.rows_in_table,
            "seconds": round(self.seconds, 4),
            "rows_per_s": round(self.rows_per_s, 1),
            "batch_latency_ms": {
                "p50": round(percentile(self.latencies_s, 50) * 1e3, 2),
                "p95": round(percentile(self.latencies_s, 95) * 1e3, 2),
                "max": round(max(self.latencies_s) * 1e3, 2),
            },
            "cpu_s": {k: round(v, 3) for k, v in self.cpu_s.items()},
        }


def truncate(db: Database) -> None:
    with psycopg.connect(db.pg_url, autocommit=True) as conn:
        conn.execute("TRUNCATE predictions, dirty_windows, window_changes")
    checkpoint(db)


def count_rows(db: Database, model_id: str) -> int:
    with psycopg.connect(db.pg_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM predictions WHERE model_id = %s", (model_id,)
        ).fetchone()
    return int(row[0]) if row else 0


def run_phase(
    *,
    name: str,
    db: Database,
    workers: int,
    batches: Sequence[Batch],
    open_worker: WorkerFactory,
    server_pid: int | None,
) -> PhaseResult:
    """Open the workers (warm-up included), truncate, then time all batches through them."""
    work: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
    for b in batches:
        work.put(b)
    for _ in range(workers):
        work.put(None)
    opened = threading.Barrier(workers + 1)  # workers connected and warmed up
    go = threading.Barrier(workers + 1)  # tables truncated: start the clock
    finished = threading.Barrier(workers + 1)  # queue drained, connections still open
    may_close = threading.Event()  # CPU counted (a closed backend takes its CPU time along)
    barriers = (opened, go, finished)
    lock = threading.Lock()
    latencies: list[float] = []
    inserted = [0]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        close: Callable[[], None] = _noop
        try:
            try:
                send, close = open_worker(index)
            finally:
                opened.wait()
            go.wait()
            mine: list[float] = []
            count = 0
            while (batch := work.get()) is not None:
                t0 = time.perf_counter()
                count += send(batch)
                mine.append(time.perf_counter() - t0)
            with lock:
                latencies.extend(mine)
                inserted[0] += count
            finished.wait()
            may_close.wait()
        except BaseException as exc:
            errors.append(exc)
            for barrier in barriers:
                barrier.abort()
        finally:
            close()

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    seconds = 0.0
    cpu_before: dict[str, float] = {}
    cpu_after: dict[str, float] = {}
    try:
        opened.wait()
        truncate(db)  # drop the warm-up rows; every phase starts from empty tables
        cpu_before = _cpu_snapshot(server_pid)
        go.wait()
        started = time.perf_counter()
        finished.wait()
        seconds = time.perf_counter() - started
        cpu_after = _cpu_snapshot(server_pid)
    except threading.BrokenBarrierError:
        pass  # a worker failed: reported below
    except BaseException:
        for barrier in barriers:
            barrier.abort()
        raise
    finally:
        may_close.set()
        for t in threads:
            t.join()
    if errors:
        raise RuntimeError(f"{name}: a worker failed") from errors[0]
    result = PhaseResult(
        name=name,
        workers=workers,
        rows_sent=sum(len(b) for b in batches),
        rows_inserted=inserted[0],
        seconds=seconds,
        latencies_s=latencies,
        cpu_s={k: cpu_after[k] - cpu_before[k] for k in cpu_after},
    )
    result.rows_in_table = count_rows(db, MODEL_ID)
    return result


def _noop() -> None:
    pass


def _cpu_snapshot(server_pid: int | None) -> dict[str, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    snap = {
        "bench_process": usage.ru_utime + usage.ru_stime,
        "postgres_all": postgres_cpu_seconds(),
    }
    if server_pid is not None:
        snap["lossmon_server"] = process_tree_cpu_seconds(server_pid)
    return snap


def http_worker_factory(base_url: str, warmup: Sequence[Batch], key: str) -> WorkerFactory:
    def open_worker(index: int) -> tuple[Sender, Callable[[], None]]:
        client = httpx.Client(
            base_url=base_url,
            timeout=120,
            headers={"content-type": "application/json", "authorization": f"Bearer {key}"},
        )
        resp = client.post(f"/v1/models/{WARMUP_MODEL_ID}/predictions", content=warmup[index].body)
        resp.raise_for_status()

        def send(batch: Batch) -> int:
            resp = client.post(f"/v1/models/{MODEL_ID}/predictions", content=batch.body)
            if resp.status_code != 200:
                raise RuntimeError(f"HTTP {resp.status_code}: {resp.text[:500]}")
            data = resp.json()
            if data["accepted"] + data["duplicates"] != len(batch):
                raise RuntimeError(f"unexpected response {data}")
            return int(data["accepted"])

        return send, client.close

    return open_worker


def _columns(rows: bulk.PredictionRows) -> dict[str, list[Any]]:
    """Statement parameter -> column, for --raw-psycopg-lists."""
    return {
        "pid": rows.prediction_ids,
        "ts": rows.ts_us,
        "ws": rows.window_starts,
        "score": rows.scores,
        "probs": rows.probabilities,
        "mv": rows.model_versions,
        "seg": rows.segments,
    }


def raw_worker_factory(
    pg_url: str, warmup: Sequence[Batch], *, psycopg_lists: bool = False
) -> WorkerFactory:
    def open_worker(index: int) -> tuple[Sender, Callable[[], None]]:
        conn = psycopg.connect(pg_url)
        pg_arrays.prepare(conn)

        def insert(model_id: str, batch: Batch) -> int:
            # The service's own statement and parameters (app/ingestion/bulk.py: arrays
            # packed in binary, a column with one value on every row as a scalar),
            # packed here per batch as the service does.
            rows = bulk.PredictionRows(
                prediction_ids=batch.prediction_ids,
                ts_us=batch.ts_us,
                window_starts=batch.window_starts,
                scores=batch.scores,
                probabilities=[None] * len(batch),  # binary model
                model_versions=batch.model_versions,
                segments=batch.segments,
            )
            if psycopg_lists:  # --raw-psycopg-lists: psycopg dumps plain lists
                arrays = bulk.pg_array_columns(rows)
                params: dict[str, Any] = {
                    k: column if k in arrays or k in ("pid", "ts", "ws") else column[0]
                    for k, column in _columns(rows).items()
                }
            else:
                arrays, params = bulk.pg_prediction_params(rows)
            params.update(model_id=model_id, received_us=time.time_ns() // 1000)
            with conn.cursor() as cur:
                cur.execute(bulk.pg_insert_predictions_sql(arrays), params)
                count = len(cur.fetchall())
            conn.commit()
            return count

        insert(WARMUP_MODEL_ID, warmup[index])
        return lambda batch: insert(MODEL_ID, batch), conn.close

    return open_worker


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000, help="predictions sent (default 200000)")
    p.add_argument("--batch", type=int, default=1_000, help="predictions per request/statement")
    p.add_argument("--clients", type=int, default=2, help="concurrent HTTP clients / connections")
    p.add_argument("--hours", type=int, default=24, help="hourly windows the rows span")
    # 5: the raw reference alone moves by ±7% from run to run on a shared machine; the
    # median of 3 still swung the ratio by ±0.03.
    p.add_argument("--repeats", type=int, default=5, help="runs of each phase (median)")
    p.add_argument("--seed", type=int, default=20261120)
    p.add_argument("--database", default="lossmon_bench_ingest", help="scratch database name")
    p.add_argument("--quick", action="store_true", help="smoke run: 10,000 rows")
    p.add_argument(
        "--raw-psycopg-lists",
        action="store_true",
        help="raw phases pass plain lists for psycopg to dump, as the service did before "
        "its own binary packing (to compare with figures measured that way)",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.repeats = 10_000, 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    wall0 = time.perf_counter()
    load0 = load_average()
    t0 = time.perf_counter()
    batches = build_batches(
        rows=args.rows, batch_size=args.batch, hours=args.hours, seed=args.seed, prefix="p"
    )
    warmup = build_batches(
        rows=args.batch * args.clients,
        batch_size=args.batch,
        hours=1,
        seed=args.seed + 1,
        prefix="w",
    )
    build_s = time.perf_counter() - t0
    body_mb = sum(len(b.body) for b in batches) / 1e6
    print(
        f"built {len(batches)} batches of {args.batch} ({body_mb:.1f} MB of JSON) "
        f"in {build_s:.1f}s",
        flush=True,
    )

    http_name = f"HTTP, {args.clients} clients"
    raw_names = {w: f"raw INSERT..unnest, {w} conn" for w in dict.fromkeys((args.clients, 1))}
    runs: dict[str, list[PhaseResult]] = {http_name: [], **{n: [] for n in raw_names.values()}}
    with fresh_database(args.database) as db:
        # As in production: with API keys (an open API is for loopback trials only).
        key_dir = Path(tempfile.mkdtemp(prefix="lossmon-bench-ingest-"))
        key = create_key(db, key_dir, "ingest")
        admin_key = create_key(db, key_dir, "admin")
        shutil.rmtree(key_dir, ignore_errors=True)
        server = start_server(db.sa_url, RESULTS_DIR / f"{NAME}-server.log")
        try:
            with httpx.Client(
                base_url=server.url,
                timeout=30,
                headers={"authorization": f"Bearer {admin_key}"},
            ) as admin:
                for model_id in (MODEL_ID, WARMUP_MODEL_ID):
                    admin.put(f"/v1/models/{model_id}", json={"window": "1h"}).raise_for_status()
            for r in range(args.repeats):
                # The server stays up (idle, no scheduler) during the raw phases.
                res = run_phase(
                    name=http_name,
                    db=db,
                    workers=args.clients,
                    batches=batches,
                    open_worker=http_worker_factory(server.url, warmup, key),
                    server_pid=server.process.pid,
                )
                runs[http_name].append(res)
                print(f"  run {r + 1}: {http_name:<26} {res.rows_per_s:>9,.0f} rows/s", flush=True)
                for workers, name in raw_names.items():
                    res = run_phase(
                        name=name,
                        db=db,
                        workers=workers,
                        batches=batches,
                        open_worker=raw_worker_factory(
                            db.pg_url, warmup, psycopg_lists=args.raw_psycopg_lists
                        ),
                        server_pid=None,
                    )
                    runs[name].append(res)
                    print(f"  run {r + 1}: {name:<26} {res.rows_per_s:>9,.0f} rows/s", flush=True)
        finally:
            stop_server(server)

    def rate(name: str) -> float:
        return median([ph.rows_per_s for ph in runs[name]])

    http_rate = rate(http_name)
    raw_rate = rate(raw_names[args.clients])
    raw1_rate = rate(raw_names[1])
    ratio = http_rate / raw_rate
    ratio_1 = http_rate / raw1_rate
    all_runs = [ph for phs in runs.values() for ph in phs]
    no_loss = all(ph.rows_in_table == ph.rows_sent == ph.rows_inserted for ph in all_runs)
    wall_s = time.perf_counter() - wall0

    rows: list[tuple[str, str]] = [
        ("rows sent per run", f"{args.rows:,} in batches of {args.batch:,}"),
        ("runs per phase (interleaved; medians below)", f"{args.repeats}"),
    ]
    for name, phs in runs.items():
        latencies = [x for ph in phs for x in ph.latencies_s]
        cpu_keys = list(phs[0].cpu_s)
        rows += [
            (
                f"{name}: rows/s",
                f"{rate(name):,.0f}  [" + ", ".join(f"{ph.rows_per_s:,.0f}" for ph in phs) + "]",
            ),
            (
                f"{name}: batch latency p50 / p95",
                f"{percentile(latencies, 50) * 1e3:.1f} / {percentile(latencies, 95) * 1e3:.1f} ms",
            ),
            (
                f"{name}: CPU s/run (" + " / ".join(cpu_keys) + ")",
                " / ".join(f"{median([ph.cpu_s[k] for ph in phs]):.2f}" for k in cpu_keys),
            ),
            (
                f"{name}: rows in table after each run",
                ", ".join(f"{ph.rows_in_table:,}" for ph in phs),
            ),
        ]
    rows += [
        (f"ratio HTTP / raw ({args.clients} conn), target >= 0.8", f"{ratio:.3f}"),
        ("ratio HTTP / raw (1 conn)", f"{ratio_1:.3f}"),
        ("no loss (rows in table == rows sent, every run)", "yes" if no_loss else "NO"),
        ("load average (1 min) at start / end", f"{load0:.2f} / {load_average():.2f}"),
        ("script wall-clock", f"{wall_s:.1f} s"),
    ]
    print_table(f"lossmon ingest benchmark ({'quick' if args.quick else 'full'})", rows)

    path = write_results(
        NAME,
        {
            "benchmark": NAME,
            "quick": args.quick,
            "config": {
                "rows": args.rows,
                "batch": args.batch,
                "clients": args.clients,
                "hours": args.hours,
                "repeats": args.repeats,
                "seed": args.seed,
                "body_mb": round(body_mb, 2),
            },
            "machine": machine_info(),
            "load_average_start_end": [round(load0, 2), round(load_average(), 2)],
            "phases": {name: [ph.summary() for ph in phs] for name, phs in runs.items()},
            "http_rows_per_s": round(http_rate, 1),
            "raw_rows_per_s": round(raw_rate, 1),
            "raw_1conn_rows_per_s": round(raw1_rate, 1),
            "ratio_http_over_raw": round(ratio, 4),
            "ratio_http_over_raw_1conn": round(ratio_1, 4),
            "target_ratio": 0.8,
            "no_loss": no_loss,
            "rows_in_table": [ph.rows_in_table for ph in all_runs],
            "wall_clock_s": round(wall_s, 1),
        },
    )
    print(f"results: {path}")
    return 0 if no_loss else 1


if __name__ == "__main__":
    sys.exit(main())
