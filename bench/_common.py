"""Shared plumbing of the benchmark scripts (not a test helper; nothing here asserts).

Run the scripts as files (`.venv/bin/python bench/ingest.py`): this module is imported
from the script's own directory.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from app import devserver

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
ADMIN_URL = os.environ.get("LOSSMON_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@dataclass(frozen=True)
class Database:
    name: str
    pg_url: str  # for psycopg.connect
    sa_url: str  # for SQLAlchemy / LOSSMON_DATABASE_URL


def _database(name: str) -> Database:
    base = ADMIN_URL.rsplit("/", 1)[0]
    pg_url = f"{base}/{name}"
    sa_url = pg_url.replace("postgresql://", "postgresql+psycopg://", 1)
    return Database(name=name, pg_url=pg_url, sa_url=sa_url)


def drop_database(name: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_database(name: str) -> Iterator[Database]:
    """A new, migrated database, dropped on exit (also on error or Ctrl-C)."""
    from app import migrate

    drop_database(name)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        db = _database(name)
        migrate.upgrade(db.sa_url)
        yield db
    finally:
        drop_database(name)


def checkpoint(db: Database) -> None:
    """Flush dirty buffers so one phase does not pay for the previous phase's writes."""
    with psycopg.connect(db.pg_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")


Server = devserver.ServerProcess
free_port = devserver.free_port


def start_server(
    database_url: str,
    log_path: Path,
    extra_env: dict[str, str] | None = None,
    workers: int | None = None,
) -> Server:
    """A real `lossmon serve --no-scheduler` (uvicorn) on a free loopback port, with its
    production default number of processes unless `workers` says otherwise."""
    return devserver.start_serve(
        database_url,
        workdir=REPO_DIR,
        extra_env=extra_env,
        log_path=log_path,
        workers=workers,
        timeout_s=120,
    )


def stop_server(server: Server) -> None:
    devserver.terminate(server.process)


_CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (0.0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _children(pid: int) -> list[int]:
    """Direct children of `pid` (every thread's list: a child belongs to the thread that
    forked it)."""
    out: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def process_tree_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and all its live descendants.

    `lossmon serve` with several workers is a supervisor whose uvicorn worker processes do
    the work: the root process alone shows ~0 CPU. A worker that exited (and was
    respawned) meanwhile takes its CPU time along, so compare snapshots of the same tree.
    """
    total = 0.0
    todo = [pid]
    seen: set[int] = set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        total += process_cpu_seconds(p)
        todo += _children(p)
    return total


def postgres_cpu_seconds() -> float:
    """utime + stime summed over every running `postgres` process on this machine.

    Includes any other activity on the server (and misses backends that exited), so it
    is an indication of where the CPU went, not an exact account.
    """
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        if comm.startswith("postgres"):
            fields = stat.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return total


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def machine_info() -> dict[str, object]:
    pg_version = ""
    try:
        with psycopg.connect(ADMIN_URL) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            pg_version = str(row[0]) if row else ""
    except psycopg.Error:
        pass
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "postgresql": pg_version,
    }


def load_average() -> float:
    """1-minute load average: anything well above 0 before a run means a noisy neighbour."""
    return os.getloadavg()[0]


def print_table(title: str, rows: Sequence[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    vwidth = max(len(v) for _, v in rows)
    line = "-" * (width + vwidth + 3)
    print()
    print(title)
    print(line)
    for key, value in rows:
        print(f"{key:<{width}} | {value:>{vwidth}}")
    print(line)


def write_results(name: str, data: dict[str, object]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def create_key(db: Database, workdir: Path, scope: str) -> str:
    """A new API key (lossmon keys create), run in `workdir`."""
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "keys", "create", "--scope", scope, "--name", "bench"],
        env={**os.environ, "LOSSMON_DATABASE_URL": db.sa_url},
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


# One column of a COPY: a value for every row (str, int or float; "\\N" is NULL), a
# sequence or numpy array with one value per row, or a function (lo, hi) -> the values of
# rows lo..hi (for columns too large to hold as Python objects, e.g. formatted ids).
CopyColumn = str | int | float | Sequence[Any] | np.ndarray | Callable[[int, int], Sequence[Any]]
COPY_CHUNK_ROWS = 200_000


def copy_columns(
    cur: psycopg.Cursor[Any], table: str, rows: int, columns: Mapping[str, CopyColumn]
) -> None:
    """COPY `rows` rows into `table` from column values, in chunks of text lines.

    The loaders write millions of rows; formatting a chunk with str() per cell and one
    join per line keeps it in C as far as Python allows (floats: str is repr, exact)."""
    names = ", ".join(columns)
    with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        for lo in range(0, rows, COPY_CHUNK_ROWS):
            hi = min(lo + COPY_CHUNK_ROWS, rows)
            cells = [_cells(column, lo, hi) for column in columns.values()]
            copy.write("".join("\t".join(line) + "\n" for line in zip(*cells, strict=True)))


def _cells(column: CopyColumn, lo: int, hi: int) -> Sequence[str]:
    if isinstance(column, str | int | float):
        return [str(column)] * (hi - lo)
    if callable(column):
        return list(map(str, column(lo, hi)))
    if isinstance(column, np.ndarray):
        return list(map(str, column[lo:hi].tolist()))
    return list(map(str, column[lo:hi]))


def copy_binary_rows(
    cur: psycopg.Cursor[Any],
    *,
    model_id: str,
    ts_us: np.ndarray,
    window_start: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    labeled: np.ndarray,
    actual_ts_us: np.ndarray,
    received_us: int,
    model_version: CopyColumn = "",
    segments: CopyColumn | None = None,
) -> None:
    """Binary predictions p{i:09d} (row i of the arrays) and, for the rows in `labeled`
    (indexes), their actuals (weight 1, matched), by COPY. A matched actual stores its
    prediction's window (the compute pass reads actuals by it), as ingestion does.
    `segments` None leaves the column NULL."""
    predictions: dict[str, CopyColumn] = {
        "model_id": model_id,
        "prediction_id": lambda lo, hi: [f"p{i:09d}" for i in range(lo, hi)],
        "ts_us": ts_us,
        "window_start": window_start,
        "score": scores,
        "model_version": model_version,
        "received_us": received_us,
    }
    if segments is not None:
        predictions["segments"] = segments
    copy_columns(cur, "predictions", len(ts_us), predictions)
    copy_columns(
        cur,
        "actuals",
        labeled.size,
        {
            "model_id": model_id,
            "prediction_id": lambda lo, hi: [f"p{i:09d}" for i in labeled[lo:hi].tolist()],
            "label": labels[labeled],
            "weight": 1.0,
            "ts_us": actual_ts_us[labeled],
            "received_us": received_us,
            "pending": "f",
            "window_start": window_start[labeled],
        },
    )
