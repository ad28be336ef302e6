"""The `lossmon` command: serve, worker, migrate, compute."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from app import migrate
from app.config import Settings, load_settings

if TYPE_CHECKING:  # pyspark is an optional extra: imported only by `spark compute`
    from app.spark import job as spark_job
    from app.spark import remote as spark_remote


def _env_help(*fields: str) -> str:
    """Help text naming the environment variables (and their defaults) a command reads,
    from Settings itself so it cannot drift."""
    lines = []
    for name in fields:
        default = Settings.model_fields[name].default
        shown = "unset" if default is None else str(default)
        lines.append(f"LOSSMON_{name.upper()} (default: {shown})")
    return (
        "Settings (environment, else config/lossmon.toml or LOSSMON_CONFIG_FILE): "
        + "; ".join(lines)
        + "."
    )


_DB_ENV = _env_help("database_url", "log_level", "log_format")

cli = typer.Typer(
    help="lossmon: windowed log loss against the naive baseline, for classifiers in production.",
    epilog="Every setting is an environment variable LOSSMON_<NAME> (README: Configuration). "
    + _DB_ENV,
    no_args_is_help=True,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"lossmon {version('lossmon')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            typer.echo("lossmon (not installed)")
        raise typer.Exit()


@cli.callback()
def _main(
    _show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    pass


def _settings() -> Settings:
    try:
        return load_settings()
    except Exception as exc:  # pydantic ValidationError: say which setting and stop
        typer.echo(f"lossmon: invalid configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc


def _logging(settings: Settings) -> dict[str, Any]:
    from app import logging_config

    return logging_config.configure(settings.log_level, settings.log_format)


def _ensure_schema(settings: Settings) -> None:
    """SQLite (embedded default) migrates itself; PostgreSQL must be migrated explicitly
    (one `lossmon migrate` per deploy, not a race between N API processes)."""
    if settings.is_sqlite:
        migrate.upgrade(settings.database_url)
        return
    from app.db import create_engine_for

    engine = create_engine_for(settings)
    try:
        current = migrate.current_revision(engine)
    finally:
        engine.dispose()
    head = migrate.head_revision()
    if current != head:
        typer.echo(
            f"lossmon: database schema is at {current}, this version needs {head}. "
            "Run `lossmon migrate` first.",
            err=True,
        )
        raise typer.Exit(3)


keys_cli = typer.Typer(help="API keys: create, list, revoke.", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")


def _session_factory(settings: Settings) -> Any:
    from app.db import create_engine_for, make_sessionmaker

    return make_sessionmaker(create_engine_for(settings))


@keys_cli.command("create")
def keys_create(
    scope: Annotated[str, typer.Option(help="ingest | read | admin")],
    name: Annotated[str, typer.Option(help="who or what uses it")] = "",
) -> None:
    """Create a key and print it (shown once; only its hash is stored)."""
    from app.auth import service as auth_service
    from app.db import session_scope

    if scope not in auth_service.SCOPES:
        typer.echo(f"lossmon: --scope must be one of {', '.join(auth_service.SCOPES)}", err=True)
        raise typer.Exit(2)
    settings = _settings()
    _ensure_schema(settings)
    with session_scope(_session_factory(settings)) as session:
        new = auth_service.create_key(
            session=session,
            scope=scope,
            name=name,
            now=datetime.now(UTC),
        )
    typer.echo(
        f"created key {new.key_id} (scope {new.scope}); store it now, it is not shown again:",
        err=True,
    )
    typer.echo(new.key)


@keys_cli.command("list")
def keys_list() -> None:
    """List keys (id, scope, name, created, revoked); never the keys themselves."""
    from app.auth import service as auth_service
    from app.db import session_scope

    settings = _settings()
    _ensure_schema(settings)
    with session_scope(_session_factory(settings)) as session:
        keys = auth_service.list_keys(session=session)
        # Tab-separated under a header: readable, and still `cut -f1` friendly.
        typer.echo("id\tscope\tname\tcreated\trevoked")
        for k in keys:
            revoked = k.revoked_at.isoformat() if k.revoked_at else "-"
            typer.echo(f"{k.id}\t{k.scope}\t{k.name or '-'}\t{k.created_at.isoformat()}\t{revoked}")
    if not keys:
        typer.echo(
            "no keys yet: the API is open on loopback; create one with "
            "`lossmon keys create --scope admin --name me`",
            err=True,
        )


@keys_cli.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="the id shown by `keys list`")]) -> None:
    """Revoke a key: requests with it are refused (401) from now on."""
    from app.auth import service as auth_service
    from app.db import session_scope

    settings = _settings()
    _ensure_schema(settings)
    with session_scope(_session_factory(settings)) as session:
        found = auth_service.revoke(session=session, key_id=key_id, now=datetime.now(UTC))
    if not found:
        typer.echo(f"lossmon: no key with id {key_id!r}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key_id}", err=True)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guard_open_access(settings: Settings, host: str) -> None:
    """No API key yet: fine on loopback (with a warning), refused anywhere else."""
    from app.auth import service as auth_service
    from app.db import session_scope

    with session_scope(_session_factory(settings)) as session:
        if auth_service.any_active_key(session=session):
            return
    if _is_loopback(host):
        logging.getLogger("lossmon").warning(
            "no API key exists: the API is open to anyone on this machine. "
            "Create one with `lossmon keys create --scope admin`."
        )
        return
    typer.echo(
        f"lossmon: refusing to serve on {host} with no API key: anyone could read and write. "
        "Create a key first: `lossmon keys create --scope admin --name me` "
        "(or bind to 127.0.0.1).",
        err=True,
    )
    raise typer.Exit(4)


def _port_free(host: str, port: int) -> bool:
    """Whether uvicorn will be able to bind. Checked up front so a port in use is one
    clear line naming the way out, not a traceback after "startup complete"."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


@cli.command(epilog=_env_help("database_url", "compute_interval_s", "log_level", "log_format"))
def serve(
    host: Annotated[
        str | None,
        typer.Option(
            help="bind address",
            envvar="LOSSMON_HOST",
            show_envvar=True,
            show_default=Settings.model_fields["host"].default,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            help="port",
            envvar="LOSSMON_PORT",
            show_envvar=True,
            show_default=str(Settings.model_fields["port"].default),
        ),
    ] = None,
    scheduler: Annotated[
        bool,
        typer.Option("--scheduler/--no-scheduler", help="run the compute scheduler in-process"),
    ] = True,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=64,
            help="API processes (default LOSSMON_WORKERS, else one per CPU on PostgreSQL "
            "up to 8, 1 on SQLite)",
        ),
    ] = None,
) -> None:
    """Serve the API (and, by default, the scheduler). --workers N runs N API processes."""
    import uvicorn

    from app.main import SCHEDULER_ENV, create_app

    settings = _settings()
    log_config = _logging(settings)
    _ensure_schema(settings)
    bind = host or settings.host
    _guard_open_access(settings, bind)
    bind_port = port or settings.port
    if not _port_free(bind, bind_port):
        typer.echo(
            f"lossmon: port {bind_port} on {bind} is already in use (another lossmon?). "
            "Stop it, or pick another port with --port or LOSSMON_PORT.",
            err=True,
        )
        raise typer.Exit(5)
    common: dict[str, Any] = {
        "host": bind,
        "port": bind_port,
        "log_level": settings.log_level.lower(),
        "log_config": log_config,
        "timeout_graceful_shutdown": 10,
    }
    workers = workers or settings.serve_workers()
    if workers == 1:
        uvicorn.run(create_app(settings, run_scheduler=scheduler), **common)
        return
    # Each process builds its app from the environment. With the scheduler on, each runs
    # one; database claims keep that correct, but `serve --no-scheduler` beside a
    # `lossmon worker` is the lighter layout.
    os.environ[SCHEDULER_ENV] = "1" if scheduler else "0"
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        workers=workers,
        # uvicorn's supervisor kills a worker that does not answer its ping within this
        # many seconds; its 5 s default is shorter than importing the app on a busy
        # host, so workers were killed and respawned while still starting.
        timeout_worker_healthcheck=60,
        **common,
    )


@cli.command(epilog=_env_help("database_url", "compute_interval_s", "log_level", "log_format"))
def worker(
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="serve Prometheus /metrics on this port (default: none)"
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="address for --metrics-port (0.0.0.0 in a container)")
    ] = "127.0.0.1",
) -> None:
    """Run only the scheduler (compute passes), for scaling out beside `serve --no-scheduler`."""
    from app import scheduler as scheduler_module
    from app.db import create_engine_for, make_sessionmaker

    settings = _settings()
    _logging(settings)
    _ensure_schema(settings)
    engine = create_engine_for(settings)
    read_factory = make_sessionmaker(engine, readonly=True)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from app.observability.registry import worker_registry

        # A daemon thread: scheduler liveness, backlog, outbox depth and age.
        start_http_server(metrics_port, metrics_host, registry=worker_registry(read_factory))
        typer.echo(
            f"lossmon worker: metrics on http://{metrics_host}:{metrics_port}/metrics", err=True
        )
    typer.echo(f"lossmon worker: compute every {settings.compute_interval_s:g}s", err=True)
    try:
        scheduler_module.run_blocking(
            settings=settings,
            factory=make_sessionmaker(engine),
            read_factory=read_factory,
        )
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        engine.dispose()


@cli.command("migrate", epilog=_DB_ENV)
def migrate_command(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to REVISION instead")] = False,
) -> None:
    """Bring the database schema to the latest migration (or REVISION)."""
    settings = _settings()
    _logging(settings)
    logging.getLogger("alembic").setLevel(logging.INFO)  # here each step is the point
    if down:
        migrate.downgrade(settings.database_url, revision if revision != "head" else "base")
    else:
        migrate.upgrade(settings.database_url, revision)
    typer.echo(f"lossmon: schema at {revision if not down else 'downgraded'}", err=True)


@cli.command(epilog=_DB_ENV)
def compute(
    max_wait: Annotated[
        float,
        typer.Option(
            min=0,
            help="longest wait, in seconds, for windows other workers are computing",
        ),
    ] = 300.0,
) -> None:
    """Run one scheduler tick now (compute dirty windows, evaluate monitors, send due
    webhooks), then exit. When it returns, every window that was dirty at its start is
    computed: it waits for windows other workers are computing, recomputes what they
    re-queue and takes over the windows of dead workers. Exit 1 if --max-wait ran out."""
    from app import jobs
    from app.db import create_engine_for, make_sessionmaker

    settings = _settings()
    _logging(settings)
    _ensure_schema(settings)
    engine = create_engine_for(settings)
    try:
        report = jobs.compute_now(
            settings=settings,
            factory=make_sessionmaker(engine),
            read_factory=make_sessionmaker(engine, readonly=True),
            max_wait_s=max_wait,
            progress=lambda line: typer.echo(f"lossmon compute: {line}", err=True),
        )
    finally:
        engine.dispose()
    c, e, d = report.compute, report.evaluation, report.delivery
    done = c.dirty_at_start - c.unfinished
    typer.echo(
        f"computed {c.computed} windows ({c.retried} re-queued and recomputed, "
        f"{c.taken_over} taken over from dead workers) in {c.seconds:.3f}s; "
        f"waited for {c.waited_for} windows other workers were computing; "
        f"{done} of {c.dirty_at_start} windows dirty at the start are computed "
        f"({c.held_at_start} were being computed by other workers then); "
        f"evaluated {e.evaluated} monitors ({len(e.fired)} fired, {len(e.resolved)} resolved); "
        f"webhooks: {d.delivered if d else 0} delivered, {d.retried if d else 0} to retry; "
        f"retention: {report.retention.predictions} predictions, "
        f"{report.retention.actuals} actuals deleted"
    )
    if c.unfinished:
        typer.echo(
            f"lossmon compute: {c.unfinished} windows dirty at the start are still being "
            f"computed elsewhere after --max-wait {max_wait:g}s",
            err=True,
        )
        raise typer.Exit(1)


@cli.command("import")
def import_file(
    kind: Annotated[str, typer.Argument(help="predictions | actuals")],
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="the file")
    ],
    model: Annotated[str, typer.Option("--model", help="the registered model id")],
    url: Annotated[str, typer.Option(help="the lossmon server")] = "http://127.0.0.1:8000",
    api_key: Annotated[
        str | None, typer.Option(envvar="LOSSMON_API_KEY", help="a key with ingest scope")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv | parquet | ndjson (default: from the file name)"),
    ] = None,
) -> None:
    """Send a file's predictions or actuals through the HTTP API in batches (columns named
    as the JSON fields; segment.<key>, proba.<class>). Safe to re-run. Exits 1 if any
    record was rejected (each is named by file line or Parquet row, and field)."""
    from lossmon import Client, LossmonError

    from app.importer import records, sender

    if kind not in ("predictions", "actuals"):
        typer.echo("lossmon: import what? `predictions` or `actuals`", err=True)
        raise typer.Exit(2)
    if fmt is not None and fmt not in ("csv", "parquet", "ndjson"):
        typer.echo("lossmon: --format must be csv, parquet or ndjson", err=True)
        raise typer.Exit(2)
    chosen: Any = fmt or records.detect_format(file)

    def show(rejection: sender.Rejection) -> None:
        typer.echo(f"{file.name}: {rejection}", err=True)

    try:
        with Client(url, api_key=api_key) as client:
            report = sender.import_file(
                client=client,
                kind=kind,  # type: ignore[arg-type]
                model_id=model,
                path=file,
                fmt=chosen,
                on_rejected=show,
            )
    except LossmonError as exc:
        typer.echo(f"lossmon: import stopped: {exc}", err=True)
        raise typer.Exit(2) from exc
    if report.expired:
        typer.echo(
            f"{report.expired} actuals past the model's retention_days were not kept", err=True
        )
    typer.echo(report.final_line())
    if report.rejected:
        raise typer.Exit(1)


@cli.command()
def demo(
    url: Annotated[
        str | None,
        typer.Option(help="a running lossmon server (default: start one on a temporary SQLite)"),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="LOSSMON_API_KEY", help="admin key for --url")
    ] = None,
    days: Annotated[int, typer.Option(min=2, max=30, help="simulated days")] = 3,
    rows_per_hour: Annotated[
        int, typer.Option(min=50, max=20_000, help="predictions per simulated hour")
    ] = 300,
    seed: Annotated[int, typer.Option(help="random seed of the simulation")] = 7,
    keep_running: Annotated[
        bool, typer.Option(help="leave the started server up at the end, until Ctrl-C")
    ] = False,
) -> None:
    """Simulate a drifting CTR model end to end: stream predictions and delayed labels,
    watch the monitor fire and receive its signed webhook. Exit 0 only if it arrived."""
    from app import demo as demo_module

    code = demo_module.run(
        demo_module.DemoOptions(
            url=url,
            api_key=api_key,
            days=days,
            rows_per_hour=rows_per_hour,
            seed=seed,
            keep_running=keep_running,
        )
    )
    raise typer.Exit(code)


spark_cli = typer.Typer(
    help="Lake-scale computation on Apache Spark (extra: pip install 'lossmon[spark]').",
    no_args_is_help=True,
)
cli.add_typer(spark_cli, name="spark")


def _epoch(text: str | None, option: str) -> int | None:
    if text is None:
        return None
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        typer.echo(f"lossmon: {option}: not an RFC 3339 timestamp: {text!r}", err=True)
        raise typer.Exit(2) from exc
    if ts.tzinfo is None:
        typer.echo(f"lossmon: {option}: the timestamp needs an offset (e.g. Z)", err=True)
        raise typer.Exit(2)
    return int(ts.timestamp())


@spark_cli.command("compute")
def spark_compute(
    model: Annotated[str, typer.Option("--model", help="the registered model id")],
    predictions: Annotated[str, typer.Option(help="prediction log: file, directory or URI")],
    actuals: Annotated[str, typer.Option(help="label log: file, directory or URI")],
    fmt: Annotated[
        str, typer.Option("--format", help="parquet | csv | delta (delta needs delta-spark)")
    ] = "parquet",
    columns: Annotated[
        Path | None, typer.Option(help="TOML file mapping input columns to fields")
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="only windows from the one holding this time (RFC 3339)")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="only windows starting before this time (RFC 3339)")
    ] = None,
    dedup_lookback: Annotated[
        int,
        typer.Option(
            min=0,
            help="with --since: seconds of predictions read before it, so an earlier "
            "duplicate of an id still wins",
        ),
    ] = 86_400,
    url: Annotated[
        str | None,
        typer.Option(
            help="store through a running lossmon's HTTP API (needs an admin key) "
            "instead of its database"
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="LOSSMON_API_KEY", help="admin key for --url")
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(help="lossmon's database (default: LOSSMON_DATABASE_URL)"),
    ] = None,
    master: Annotated[
        str | None,
        typer.Option(
            help="Spark master, e.g. local[2] or spark://host:7077 (default: as "
            "spark-submit configured, else local[*])"
        ),
    ] = None,
) -> None:
    """Compute the model's windows (and slices) in Spark from prediction and label logs,
    and store them in lossmon as `source: spark` windows (replacing those of the range),
    through its HTTP API (--url, an admin key) or its database (--database-url)."""
    from app.spark import columns as columns_module

    if url is not None and database_url is not None:
        typer.echo("lossmon: pass --url (with --api-key) or --database-url, not both", err=True)
        raise typer.Exit(2)
    if fmt not in ("parquet", "csv", "delta"):
        typer.echo("lossmon: --format must be parquet, csv or delta", err=True)
        raise typer.Exit(2)
    try:
        column_map = columns_module.load(columns)
    except columns_module.ColumnsFileError as exc:
        typer.echo(f"lossmon: --columns: {exc}", err=True)
        raise typer.Exit(2) from exc
    start, end = _epoch(since, "--since"), _epoch(until, "--until")
    if database_url is not None:
        os.environ["LOSSMON_DATABASE_URL"] = database_url
    settings = _settings()
    _logging(settings)
    if url is None:  # with --url the server's database is none of ours
        _ensure_schema(settings)
    try:
        from app.spark import job, read, remote, session
    except ImportError as exc:
        typer.echo(
            f"lossmon: spark compute needs the spark extra ({exc}): pip install 'lossmon[spark]'",
            err=True,
        )
        raise typer.Exit(2) from exc
    inputs = job.Inputs(
        model_id=model,
        predictions=predictions,
        actuals=actuals,
        fmt=fmt,
        columns=column_map,
        since=start,
        until=end,
        dedup_lookback=dedup_lookback,
    )
    if url is not None:
        _spark_compute_remote(inputs, remote.Target(url, api_key), fmt=fmt, master=master)
        return
    from app.db import create_engine_for, make_sessionmaker, session_scope

    engine = create_engine_for(settings)
    try:
        # Before the JVM starts: an unknown model needs no Spark to be refused.
        with session_scope(make_sessionmaker(engine, readonly=True)) as s:
            job.check_model(session=s, model_id=model)
    except job.UnknownModel as exc:
        engine.dispose()
        typer.echo(f"lossmon: {exc}; nothing stored", err=True)
        raise typer.Exit(1) from exc
    if fmt == "delta" and not session.delta_available():
        engine.dispose()
        _no_delta()
    spark = session.build(master=master, delta=fmt == "delta")
    try:
        report = job.compute(
            spark, inputs=inputs, factory=make_sessionmaker(engine), top_n=settings.slice_top_n
        )
    except (job.UnknownModel, read.SparkInputError, job.ModelChanged) as exc:
        typer.echo(f"lossmon: {exc}; nothing stored", err=True)
        raise typer.Exit(1) from exc
    finally:
        engine.dispose()
        spark.stop()
    _spark_report(report, model)


def _no_delta() -> NoReturn:
    typer.echo(
        "lossmon: --format delta needs the optional delta-spark package "
        "(pip install delta-spark, a release matching pyspark 4); parquet and csv "
        "need only the spark extra",
        err=True,
    )
    raise typer.Exit(2)


def _spark_compute_remote(
    inputs: spark_job.Inputs, target: spark_remote.Target, *, fmt: str, master: str | None
) -> None:
    """`spark compute --url`: no database here; the server finalises and stores."""
    from app.spark import job, read, remote, session

    try:
        # Before the JVM starts: a refused key or an unknown model needs no Spark.
        plan = job.remote_plan(target, inputs.model_id)
    except remote.RemoteError as exc:
        typer.echo(f"lossmon: {exc}; nothing stored", err=True)
        raise typer.Exit(1) from exc
    if fmt == "delta" and not session.delta_available():
        _no_delta()
    spark = session.build(master=master, delta=fmt == "delta")
    try:
        report = job.compute_remote(spark, inputs=inputs, target=target, plan=plan)
    except remote.OutcomeUnknown as exc:
        typer.echo(f"lossmon: {exc}", err=True)
        raise typer.Exit(1) from exc
    except (read.SparkInputError, remote.RemoteError) as exc:
        typer.echo(f"lossmon: {exc}; nothing stored", err=True)
        raise typer.Exit(1) from exc
    finally:
        spark.stop()
    _spark_report(report, inputs.model_id, where=f" at {target.url}")


def _spark_report(report: Any, model: str, where: str = "") -> None:
    typer.echo(
        f"spark: stored {report.windows} windows and {report.slices} slices "
        f"({report.removed} removed) for {model}{where}; Spark {report.spark_seconds:.1f}s, "
        f"store {report.store_seconds:.1f}s"
    )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
