"""The `lossmon` command: serve, worker, migrate, compute."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from app import migrate as migrations
from app.config import Settings, load_settings

cli = typer.Typer(
    help="lossmon: windowed log loss against the naive baseline, for classifiers in production.",
    no_args_is_help=True,
    add_completion=False,
)


def _settings() -> Settings:
    try:
        return load_settings()
    except Exception as exc:  # pydantic ValidationError: say which setting and stop
        typer.echo(f"lossmon: invalid configuration:\n{exc}", err=True)
        raise typer.Exit(2) from exc


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _ensure_schema(settings: Settings) -> None:
    """SQLite (embedded default) migrates itself; PostgreSQL must be migrated explicitly
    (one `lossmon migrate` per deploy, not a race between N API processes)."""
    if settings.is_sqlite:
        migrations.upgrade(settings.database_url)
        return
    from app.db import create_engine_for

    engine = create_engine_for(settings)
    try:
        current = migrations.current_revision(engine)
    finally:
        engine.dispose()
    head = migrations.head_revision()
    if current != head:
        typer.echo(
            f"lossmon: database schema is at {current}, this version needs {head}. "
            "Run `lossmon migrate` first.",
            err=True,
        )
        raise typer.Exit(3)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    scheduler: Annotated[
        bool,
        typer.Option("--scheduler/--no-scheduler", help="run the compute scheduler in-process"),
    ] = True,
) -> None:
    """Serve the API and dashboard (and, by default, the scheduler) in one process."""
    import uvicorn

    from app.main import create_app

    settings = _settings()
    _logging(settings)
    _ensure_schema(settings)
    app = create_app(settings, run_scheduler=scheduler)
    uvicorn.run(
        app,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )


@cli.command()
def worker() -> None:
    """Run only the scheduler (compute passes), for scaling out beside `serve --no-scheduler`."""
    from app import scheduler as scheduler_module
    from app.db import create_engine_for, make_sessionmaker

    settings = _settings()
    _logging(settings)
    _ensure_schema(settings)
    engine = create_engine_for(settings)
    typer.echo(f"lossmon worker: compute every {settings.compute_interval_s:g}s", err=True)
    try:
        scheduler_module.run_blocking(
            settings=settings,
            factory=make_sessionmaker(engine),
            read_factory=make_sessionmaker(engine, readonly=True),
        )
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        engine.dispose()


@cli.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="target revision")] = "head",
    down: Annotated[bool, typer.Option("--down", help="downgrade to REVISION instead")] = False,
) -> None:
    """Bring the database schema to the latest migration (or REVISION)."""
    settings = _settings()
    _logging(settings)
    if down:
        migrations.downgrade(settings.database_url, revision if revision != "head" else "base")
    else:
        migrations.upgrade(settings.database_url, revision)
    typer.echo(f"lossmon: schema at {revision if not down else 'downgraded'}", err=True)


@cli.command()
def compute() -> None:
    """Run one scheduler tick now (compute dirty windows), then exit."""
    from app.db import create_engine_for, make_sessionmaker
    from app.windows import service as window_service

    settings = _settings()
    _logging(settings)
    _ensure_schema(settings)
    engine = create_engine_for(settings)
    try:
        result = window_service.compute_pass(
            factory=make_sessionmaker(engine),
            read_factory=make_sessionmaker(engine, readonly=True),
            settings=settings,
        )
    finally:
        engine.dispose()
    typer.echo(
        f"computed {result.computed} windows ({result.retried} re-queued) in {result.seconds:.3f}s"
    )


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
