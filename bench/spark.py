"""Lake-scale computation on Spark: `lossmon spark compute` on local[2] against a
reference Spark job and against the PostgreSQL path's compute pass.

    .venv/bin/python bench/spark.py              # 20M predictions + 18M labels
    .venv/bin/python bench/spark.py --quick      # 200k + 180k, a smoke run

Data (generated once with Spark into --data-dir, reused while the sizes match; not
timed): N predictions over --windows hourly windows, 2 model versions and a segment
key `country` of 10 values; every 100th prediction has a later duplicate (it must lose
the dedup); 90% of predictions get a label (so 18M of 20M), every 50th of those with
an older, wrong label that must lose; weights 1, 1.5, 2. Every value is a fixed
integer formula of the row number, so the PostgreSQL load below writes exactly the
winning rows of the same files without reading them back.

Measured, each in a fresh subprocess (`--child ...`) whose clock runs around the work
only (JVM start-up excluded); peak RSS is the VmHWM of the child's JVM (in local mode
the driver and the executors are that one JVM) plus that of the Python driver:

- job:        app.spark.job.compute over the files: validate, dedup, join, window and
              slice sums with quantiles (histogram, within 0.5 %), finalise, store into
              PostgreSQL.
- reference:  the same files, predictions only: mean(−ln p) per window, no validation,
              no dedup, no join (target: job / reference <= 2.5).
- floor:      the same files, both inputs' prediction_id only (hashed), grouped by it:
              less than the one shuffle any dedup-and-join by id needs; a yardstick
              for the target (floor / reference above 2.5 puts the target out of reach).
- pg:         --pg-rows predictions (default 2M: 20M rows through one PostgreSQL
              compute pass does not fit this machine's time budget) loaded into
              PostgreSQL by COPY (not timed), then one compute pass (timed), against
              `job` over Parquet files of the same --pg-rows rows.

The machine is shared: the 1-minute load average is printed before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from _common import (
    REPO_DIR,
    copy_columns,
    fresh_database,
    load_average,
    machine_info,
    print_table,
    write_results,
)

T0 = 1795168800  # 2026-11-20T10:00:00Z
HOUR = 3600
MODEL_ID = "bench-spark"
CONF = {
    "spark.driver.memory": "6g",
    "spark.sql.shuffle.partitions": "64",
    # On in both children (same overhead): the job's stage times come from its REST API.
    "spark.ui.enabled": "true",
}


# -------------------------------------------------------------------------- the data


def _formulas(n: int, windows: int) -> dict[str, str]:
    """Spark SQL of each column for row number `id` (the numpy twin is `_numpy_rows`)."""
    return {
        "prediction_id": "concat('p', id)",
        "ts": f"{T0} + (id * {windows * HOUR} div {n})",
        "score": "pmod(id * 7919 + 13, 1000003) / 1000003.0",
        "model_version": "if(id % 2 = 0, 'v1', 'v2')",
        "country": "concat('c', pmod(id * 17, 10))",
        "label": "if(pmod(id * 104729 + 7, 1000033) / 1000033.0 < "
        "pmod(id * 7919 + 13, 1000003) / 1000003.0, 1, 0)",
        "weight": "1.0 + (id % 3) * 0.5",
    }


def generate(spark: Any, root: Path, n: int, windows: int) -> None:
    f = _formulas(n, windows)
    base = spark.range(n)
    preds = base.selectExpr(
        f"{f['prediction_id']} AS prediction_id",
        f"timestamp_seconds({f['ts']}) AS timestamp",
        f"{f['score']} AS score",
        f"{f['model_version']} AS model_version",
        f"{f['country']} AS `segment.country`",
    )
    dups = base.where("id % 100 = 0").selectExpr(
        f"{f['prediction_id']} AS prediction_id",
        f"timestamp_seconds({f['ts']} + 1800) AS timestamp",
        "0.999 AS score",
        "'dup' AS model_version",
        f"{f['country']} AS `segment.country`",
    )
    preds.unionByName(dups).write.mode("overwrite").parquet(str(root / "predictions"))
    labeled = base.where("pmod(id * 31, 10) != 0")
    acts = labeled.selectExpr(
        f"{f['prediction_id']} AS prediction_id",
        f"{f['label']} AS label",
        f"{f['weight']} AS weight",
        f"timestamp_seconds({f['ts']} + 7200) AS timestamp",
    )
    wrong = labeled.where("id % 50 = 1").selectExpr(
        f"{f['prediction_id']} AS prediction_id",
        f"1 - {f['label']} AS label",
        "9.0 AS weight",
        f"timestamp_seconds({f['ts']} + 3600) AS timestamp",
    )
    acts.unionByName(wrong).write.mode("overwrite").parquet(str(root / "actuals"))
    (root / "meta.json").write_text(json.dumps({"n": n, "windows": windows}))


def _numpy_rows(n: int, windows: int) -> dict[str, np.ndarray]:
    i = np.arange(n, dtype=np.int64)
    score = np.mod(i * 7919 + 13, 1000003) / 1000003.0
    return {
        "id": i,
        "ts": T0 + (i * windows * HOUR) // n,
        "score": score,
        "version": np.where(i % 2 == 0, "v1", "v2"),
        "country": np.char.add("c", np.mod(i * 17, 10).astype(str)),
        "label": (np.mod(i * 104729 + 7, 1000033) / 1000033.0 < score).astype(np.int64),
        "weight": 1.0 + (i % 3) * 0.5,
        "labeled": np.mod(i * 31, 10) != 0,
    }


def ensure_data(root: Path, n: int, windows: int) -> None:
    meta = root / "meta.json"
    if meta.exists() and json.loads(meta.read_text()) == {"n": n, "windows": windows}:
        return
    from app.spark import session

    spark = session.build(master="local[2]", app_name="lossmon-bench-data", conf=CONF)
    try:
        generate(spark, root, n, windows)
    finally:
        spark.stop()


# ---------------------------------------------------------------------------- children


def _peak_rss_mb() -> float:
    """VmHWM of this process plus every descendant (the JVM), in MB."""
    me = os.getpid()
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
                parents[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, grew = {me}, True
    while grew:
        new = {p for p, pp in parents.items() if pp in family and p not in family}
        family |= new
        grew = bool(new)
    total = 0
    for pid in family:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def child(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    from app.spark import session

    if kind == "pg":
        return _child_pg(args)
    spark = session.build(master="local[2]", app_name=f"lossmon-bench-{kind}", conf=CONF)
    spark.sparkContext.setLogLevel("ERROR")
    root = Path(args.root)
    try:
        started = time.perf_counter()
        if kind == "reference":
            rows = (
                spark.read.parquet(str(root / "predictions"))
                .selectExpr(
                    "floor(unix_seconds(timestamp) / 3600) * 3600 AS ws",
                    "-ln(least(greatest(score, 1e-15), 1 - 1e-15)) AS nll",
                )
                .groupBy("ws")
                .avg("nll")
                .collect()
            )
            out: dict[str, Any] = {"windows": len(rows)}
        elif kind == "floor":
            # Less than any dedup-and-join by prediction_id must do, whatever the
            # implementation: bring both inputs' rows of an id together (one shuffle; the
            # files are not partitioned by id), here of a 64-bit hash of the id (cheaper
            # than the text, and not even correct: hashes can collide). No values, no
            # checks. On a quiet machine the text id took 40 s, the hash 34 s.
            def hashed(path: Path) -> Any:
                return spark.read.parquet(str(path)).selectExpr("xxhash64(prediction_id) AS h")

            ids = hashed(root / "predictions").unionByName(hashed(root / "actuals"))
            (row,) = ids.groupBy("h").count().selectExpr("count(*) AS n").collect()
            out = {"ids": int(row["n"])}
        else:
            from app.config import load_settings
            from app.db import create_engine_for, make_sessionmaker
            from app.spark import job

            engine = create_engine_for(load_settings(database_url=args.database_url))
            report = job.compute(
                spark,
                inputs=job.Inputs(
                    model_id=MODEL_ID,
                    predictions=str(root / "predictions"),
                    actuals=str(root / "actuals"),
                ),
                factory=make_sessionmaker(engine),
                top_n=20,
            )
            engine.dispose()
            out = {
                "windows": report.windows,
                "slices": report.slices,
                "spark_s": report.spark_seconds,
                "store_s": report.store_seconds,
            }
        out["seconds"] = time.perf_counter() - started
        out["stages"] = _stages(spark)
        out["peak_rss_mb"] = _peak_rss_mb()
        return out
    finally:
        spark.stop()


def _stages(spark: Any) -> list[dict[str, Any]]:
    """Completed stages: executor run time (summed over tasks), rows in and shuffled."""
    import urllib.request

    sc = spark.sparkContext
    url = f"{sc.uiWebUrl}/api/v1/applications/{sc.applicationId}/stages?status=complete"
    with urllib.request.urlopen(url, timeout=30) as r:
        stages = json.load(r)
    return [
        {
            "id": s["stageId"],
            "name": s["name"][:60],
            "tasks": s["numTasks"],
            "run_s": round(s["executorRunTime"] / 1000, 1),
            "input_rows": s["inputRecords"],
            "shuffle_read_rows": s["shuffleReadRecords"],
            "shuffle_write_rows": s["shuffleWriteRecords"],
            "spill_mb": s["diskBytesSpilled"] >> 20,
        }
        for s in sorted(stages, key=lambda s: s["stageId"])
        if s["executorRunTime"] >= 100
    ]


def _child_pg(args: argparse.Namespace) -> dict[str, Any]:
    from app.config import load_settings
    from app.db import create_engine_for, make_sessionmaker
    from app.windows import service

    settings = load_settings(database_url=args.database_url)
    engine = create_engine_for(settings)
    started = time.perf_counter()
    result = service.compute_pass(
        factory=make_sessionmaker(engine),
        read_factory=make_sessionmaker(engine, readonly=True),
        settings=settings,
    )
    seconds = time.perf_counter() - started
    with engine.connect() as conn:
        # The labeled rows the pass joined (0 would mean the actuals were not joined).
        labeled = conn.exec_driver_sql(
            "SELECT coalesce(sum(labeled), 0) FROM window_metrics WHERE model_id = %s",
            (MODEL_ID,),
        ).scalar_one()
    engine.dispose()
    return {
        "windows": result.computed,
        "labeled": int(labeled),
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
    }


def run_child(kind: str, root: Path, database_url: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", kind, "--root", str(root)]
    cmd += ["--database-url", database_url]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_DIR, check=False)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"child {kind} failed")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# ------------------------------------------------------------------------ PostgreSQL


def register(database_url: str) -> None:
    from app.config import load_settings
    from app.db import create_engine_for, make_sessionmaker, session_scope
    from app.registry import service as model_service
    from app.registry.schemas import ModelIn

    engine = create_engine_for(load_settings(database_url=database_url))
    with session_scope(make_sessionmaker(engine)) as session:
        model_service.upsert_model(
            session=session,
            model_id=MODEL_ID,
            body=ModelIn(task="binary", window="1h"),
            now=datetime.now(UTC),
        )
    engine.dispose()


def load_pg(pg_url: str, n: int, windows: int) -> float:
    """The winning rows of the generated files, by COPY; windows marked dirty."""
    started = time.perf_counter()
    r = _numpy_rows(n, windows)
    ws = r["ts"] // HOUR * HOUR
    received = int(time.time() * 1e6)
    idx = np.flatnonzero(r["labeled"])
    with psycopg.connect(pg_url) as conn, conn.cursor() as cur:
        copy_columns(
            cur,
            "predictions",
            n,
            {
                "model_id": MODEL_ID,
                "prediction_id": lambda lo, hi: [f"p{i}" for i in r["id"][lo:hi].tolist()],
                "ts_us": r["ts"] * 1_000_000,
                "window_start": ws,
                "score": r["score"],
                "model_version": r["version"],
                "segments": lambda lo, hi: [
                    f'{{"country": "{c}"}}' for c in r["country"][lo:hi].tolist()
                ],
                "received_us": received,
            },
        )
        copy_columns(
            cur,
            "actuals",
            idx.size,
            {
                "model_id": MODEL_ID,
                "prediction_id": lambda lo, hi: [f"p{i}" for i in idx[lo:hi].tolist()],
                "label": r["label"][idx],
                "weight": r["weight"][idx],
                "ts_us": (r["ts"][idx] + 7200) * 1_000_000,
                "received_us": received,
                "pending": "f",
                # A matched actual stores its prediction's window, as ingestion does: the
                # compute pass joins actuals by it (without it no window had a label).
                "window_start": ws[idx],
            },
        )
        cur.executemany(
            "INSERT INTO dirty_windows (model_id, window_start, generation) VALUES (%s, %s, 1)",
            [(MODEL_ID, int(w)) for w in np.unique(ws).tolist()],
        )
        conn.commit()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE predictions")
        conn.execute("VACUUM ANALYZE actuals")
        conn.execute("CHECKPOINT")
    return time.perf_counter() - started


# ------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000)
    parser.add_argument("--pg-rows", type=int, default=2_000_000)
    parser.add_argument("--windows", type=int, default=168)
    parser.add_argument(
        "--data-dir", default=os.environ.get("LOSSMON_BENCH_SPARK_DIR", "/tmp/lossmon-bench-spark")
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--child")
    parser.add_argument("--root")
    parser.add_argument("--database-url")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args)))
        return
    if args.quick:
        args.rows, args.pg_rows, args.windows = 200_000, 100_000, 24
    data = Path(args.data_dir)
    big, small = data / f"n{args.rows}", data / f"n{args.pg_rows}"
    load_before = load_average()
    ensure_data(big, args.rows, args.windows)
    ensure_data(small, args.pg_rows, args.windows)
    results: dict[str, Any] = {"machine": machine_info(), "rows": args.rows}
    with fresh_database("lossmon_bench_spark") as db:
        register(db.sa_url)
        results["job"] = run_child("job", big, db.sa_url)
        results["reference"] = run_child("reference", big, db.sa_url)
        results["floor"] = run_child("floor", big, db.sa_url)
    with fresh_database("lossmon_bench_spark_pg") as db:
        register(db.sa_url)
        results["pg_load_s"] = load_pg(db.pg_url, args.pg_rows, args.windows)
        results["pg"] = run_child("pg", small, db.sa_url)
    with fresh_database("lossmon_bench_spark_small") as db:
        register(db.sa_url)
        results["job_small"] = run_child("job", small, db.sa_url)
    load_after = load_average()
    job, ref, floor = results["job"], results["reference"], results["floor"]
    total_rows = args.rows * 1.01 + args.rows * 0.9 * 1.02  # predictions + labels read
    rows_table = [
        (
            "predictions (+1% duplicates) / labels (+2% wrong)",
            f"{args.rows:,} / {int(args.rows * 0.9):,}",
        ),
        ("job: wall time (validate, dedup, join, aggregate, store)", f"{job['seconds']:.1f} s"),
        ("job: of which Spark / store", f"{job['spark_s']:.1f} s / {job['store_s']:.1f} s"),
        ("job: input rows per second", f"{total_rows / job['seconds']:,.0f}"),
        ("job: windows / slices stored", f"{job['windows']} / {job['slices']}"),
        ("job: driver peak RSS (JVM + Python)", f"{job['peak_rss_mb']:,.0f} MB"),
        ("reference: mean(-ln p) by window", f"{ref['seconds']:.1f} s"),
        ("reference: peak RSS", f"{ref['peak_rss_mb']:,.0f} MB"),
        ("ratio job / reference (target <= 2.5)", f"{job['seconds'] / ref['seconds']:.2f}"),
        ("floor: both inputs' id hashes grouped, nothing else", f"{floor['seconds']:.1f} s"),
        ("ratio floor / reference", f"{floor['seconds'] / ref['seconds']:.2f}"),
        (
            f"PostgreSQL path, {args.pg_rows:,} predictions: load (not timed)",
            f"{results['pg_load_s']:.1f} s",
        ),
        (
            "PostgreSQL path: compute pass (windows, labeled rows)",
            f"{results['pg']['seconds']:.1f} s ({results['pg']['windows']}, "
            f"{results['pg']['labeled']:,})",
        ),
        ("PostgreSQL path: peak RSS", f"{results['pg']['peak_rss_mb']:,.0f} MB"),
        (f"Spark job on the same {args.pg_rows:,}", f"{results['job_small']['seconds']:.1f} s"),
        (
            "ratio PostgreSQL pass / Spark job (same rows)",
            f"{results['pg']['seconds'] / results['job_small']['seconds']:.2f}",
        ),
        ("load average before / after", f"{load_before:.2f} / {load_after:.2f}"),
    ]
    print_table("lossmon spark compute on local[2]", rows_table)
    print("job stages over 0.1 s (executor run time summed over tasks):")
    for st in job["stages"]:
        print(
            f"  {st['id']:>3} {st['name']:<40} tasks {st['tasks']:>3}  {st['run_s']:>7.1f} s  "
            f"in {st['input_rows']:>10,}  shuffle r/w {st['shuffle_read_rows']:>10,} / "
            f"{st['shuffle_write_rows']:>10,}  spill {st['spill_mb']} MB"
        )
    results["load_average"] = [load_before, load_after]
    print(f"results: {write_results('spark', results)}")


if __name__ == "__main__":
    main()
