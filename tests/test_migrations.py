"""One migration path: upgrade, downgrade to base, upgrade again, on both databases;
the migrated schema equals the models; app code never calls create_all."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from app import migrate
from app.tables import Base
from tests.conftest import Db

APP_DIR = Path(__file__).resolve().parent.parent / "app"


def _tables(db: Db) -> set[str]:
    db.engine.dispose()
    return set(inspect(db.engine).get_table_names()) - {"alembic_version"}


def test_cli_migrate_down_to_base_and_up_again(db: Db) -> None:
    assert migrate.current_revision(db.engine) == migrate.head_revision()
    env = {"LOSSMON_DATABASE_URL": db.url, "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "app.cli", "migrate"]
    try:
        subprocess.run([*run, "base", "--down"], env=env, check=True, capture_output=True)
        assert _tables(db) == set()
        assert migrate.current_revision(db.engine) is None
    finally:
        subprocess.run(run, env=env, check=True, capture_output=True)
    assert _tables(db) == set(Base.metadata.tables)
    assert migrate.current_revision(db.engine) == migrate.head_revision()


def test_migrated_schema_matches_models(db: Db) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_no_create_all_in_app_code() -> None:
    offenders = [p for p in APP_DIR.rglob("*.py") if "create_all(" in p.read_text()]
    assert offenders == []


def test_migration_files_are_date_prefixed() -> None:
    versions = Path(__file__).resolve().parent.parent / "migrations" / "versions"
    names = [p.name for p in versions.glob("*.py") if p.name != "__init__.py"]
    assert names
    assert all(n[:4].isdigit() and n[4] == "_" for n in names), names
