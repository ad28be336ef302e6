"""The Python client's Logger: what a log call costs the caller, and what it delivers.

    .venv/bin/python bench/client.py            # full run (a minute or two)
    .venv/bin/python bench/client.py --quick    # smoke run
    .venv/bin/python bench/client.py --pg       # the server on PostgreSQL (default SQLite)

1. Call overhead, server down (target p99 < 50 µs): `Logger.log_prediction` timed one
   call at a time (perf_counter_ns) against a port nobody listens on, with a buffer large
   enough to keep everything; then the same once the buffer is full (the drop path). The
   reference, timed the same way in the same run, is a bare `deque.append` of the same
   tuple: the timer's own cost plus the cheapest possible enqueue.
2. Call overhead, server up: the same calls while the worker thread is sending to a
   real `lossmon serve` (the caller then shares the GIL with the worker).
3. End to end, records/s into a real `lossmon serve`: N predictions through the Logger
   (first call to `close()` returned) vs the same N as raw `Client.log_predictions`
   batches of the Logger's batch size. Runs alternate, medians reported.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import (
    free_port,
    fresh_database,
    load_average,
    machine_info,
    percentile,
    print_table,
    stop_server,
    write_results,
)
from lossmon import Client, Logger

from app import devserver, migrate

NAME = "client"
T0 = datetime(2026, 11, 20, tzinfo=UTC)
BATCH = 1_000


def time_calls(call: Callable[[int], None], n: int) -> list[float]:
    """Microseconds per call, one at a time."""
    clock = time.perf_counter_ns
    out = [0.0] * n
    for i in range(n):
        started = clock()
        call(i)
        out[i] = (clock() - started) / 1_000
    return out


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "p50_us": percentile(samples, 50),
        "p99_us": percentile(samples, 99),
        "p99.9_us": percentile(samples, 99.9),
        "max_us": max(samples),
    }


def overhead_server_down(n: int) -> dict[str, dict[str, float]]:
    url = f"http://127.0.0.1:{free_port()}"  # nobody listens
    logger = Logger(url, max_buffer=n, backoff_s=0.5, max_backoff_s=5)
    ts = time.time()

    def log(i: int) -> None:
        logger.log_prediction("ctr", f"p{i}", 0.5, timestamp=T0)

    kept = time_calls(log, n)
    dropping = time_calls(log, n // 4)  # the buffer is full now
    stats = logger.stats()
    assert stats.buffered == n and stats.dropped == n // 4, stats
    logger.close(timeout=0)

    ring: deque[tuple[str, str, dict[str, Any]]] = deque()

    def reference(i: int) -> None:
        ring.append(("predictions", "ctr", {"prediction_id": f"p{i}", "timestamp": ts}))

    ref = time_calls(reference, n)
    return {"kept": summary(kept), "dropped": summary(dropping), "reference": summary(ref)}


def register(url: str, model: str) -> None:
    with Client(url) as lm:
        lm.put_model(model, window="1h")


def overhead_server_up(url: str, n: int) -> dict[str, float]:
    register(url, "overhead")
    logger = Logger(url, max_buffer=n, batch_size=BATCH, flush_interval=0.05)

    def log(i: int) -> None:
        logger.log_prediction("overhead", f"p{i}", 0.5, timestamp=T0)

    samples = time_calls(log, n)
    logger.close(timeout=300)
    return summary(samples)


def timestamps(n: int) -> list[datetime]:
    return [T0 + timedelta(seconds=i) for i in range(n)]


def through_logger(url: str, model: str, n: int) -> float:
    """First log call to close() returned: the calls, encoding and sending."""
    register(url, model)
    stamps = timestamps(n)
    logger = Logger(url, max_buffer=n, batch_size=BATCH, flush_interval=0.05)
    started = time.perf_counter()
    for i in range(n):
        logger.log_prediction(model, f"p{i}", (i % 97 + 1) / 100, timestamp=stamps[i])
    assert logger.close(timeout=600)
    elapsed = time.perf_counter() - started
    stats = logger.stats()
    assert stats.sent == n, stats
    return n / elapsed


def through_client(url: str, model: str, n: int) -> float:
    """The same records built as dicts and sent in batches, one call per batch."""
    register(url, model)
    stamps = timestamps(n)
    with Client(url, max_batch=BATCH) as lm:
        started = time.perf_counter()
        for k in range(0, n, BATCH):
            batch = [
                {"prediction_id": f"p{i}", "timestamp": stamps[i], "score": (i % 97 + 1) / 100}
                for i in range(k, min(n, k + BATCH))
            ]
            lm.log_predictions(model, batch)
        elapsed = time.perf_counter() - started
    return n / elapsed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    parser.add_argument("--pg", action="store_true", help="the server on PostgreSQL")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    calls = 20_000 if args.quick else 200_000
    records = 10_000 if args.quick else 50_000
    repeats = 1 if args.quick else 3
    load_before = load_average()
    print(f"load average before: {load_before:.2f}  ({os.cpu_count()} CPUs)")

    down = overhead_server_down(calls)

    with tempfile.TemporaryDirectory() as tmp:
        if args.pg:
            with fresh_database("lossmon_bench_client") as db:
                results = run_against(db.sa_url, Path(tmp), calls, records, repeats)
        else:
            url = f"sqlite:///{tmp}/bench.db"
            migrate.upgrade(url)
            results = run_against(url, Path(tmp), calls, records, repeats)
    up, logger_rates, client_rates = results

    logger_rate = statistics.median(logger_rates)
    client_rate = statistics.median(client_rates)
    rows = [
        (f"down, kept: p50 / p99 / p99.9 (µs), {calls:,} calls", _fmt(down["kept"])),
        ("down, dropped (buffer full)", _fmt(down["dropped"])),
        ("reference: deque.append, same timer", _fmt(down["reference"])),
        (
            "p99 ratio kept / reference",
            f"{down['kept']['p99_us'] / down['reference']['p99_us']:.1f}x",
        ),
        ("server up, worker sending", _fmt(up)),
        (f"Logger end to end, {records:,} records (rec/s)", f"{logger_rate:,.0f}"),
        (f"raw Client.log_predictions, batches of {BATCH}", f"{client_rate:,.0f}"),
        ("ratio Logger / raw Client", f"{logger_rate / client_rate:.2f}"),
    ]
    print_table(f"bench/client.py ({'PostgreSQL' if args.pg else 'SQLite'} server)", rows)
    target = "met" if down["kept"]["p99_us"] < 50 else "NOT met"
    print(f"target p99 < 50 µs with the server down: {target}")
    load_after = load_average()
    print(f"load average after: {load_after:.2f}")
    path = write_results(
        NAME,
        {
            "machine": machine_info(),
            "database": "postgresql" if args.pg else "sqlite",
            "load_average": [load_before, load_after],
            "overhead_server_down": down,
            "overhead_server_up": up,
            "logger_records_per_s": logger_rates,
            "client_records_per_s": client_rates,
        },
    )
    print(f"written: {path}")
    return 0


def run_against(
    database_url: str, tmp: Path, calls: int, records: int, repeats: int
) -> tuple[dict[str, float], list[float], list[float]]:
    # A generous start timeout: the shared machine can be very busy.
    server = devserver.start_serve(
        database_url, workdir=tmp, log_path=tmp / "server.log", timeout_s=180
    )
    try:
        up = overhead_server_up(server.url, min(calls, 50_000))
        logger_rates: list[float] = []
        client_rates: list[float] = []
        for r in range(repeats):
            # Alternate the order, so neither always runs on a warmer server.
            order = [("logger", through_logger), ("client", through_client)]
            if r % 2:
                order.reverse()
            for name, run in order:
                rate = run(server.url, f"{name}{r}", records)
                (logger_rates if name == "logger" else client_rates).append(rate)
                print(f"  run {r + 1}: {name:<6} {rate:>10,.0f} records/s", flush=True)
        return up, logger_rates, client_rates
    finally:
        stop_server(server)


def _fmt(s: dict[str, float]) -> str:
    return f"{s['p50_us']:.1f} / {s['p99_us']:.1f} / {s['p99.9_us']:.1f}"


if __name__ == "__main__":
    sys.exit(main())
