"""What `pip install` puts into site-packages: the client distribution is `lossmon`
only (httpx its one dependency) and imports next to a user's own `app` package; the
server wheel ships no top-level `migrations` package and migrates from the installed
copy. Wheels are built offline (no build isolation) from copies in tmp_path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build_wheel(source: Path, out: Path) -> Path:
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run(
        [*pip, "-w", str(out), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("*.whl")
    return wheel


def top_level(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return {name.split("/")[0] for name in z.namelist()}


def test_client_imports_beside_a_user_app_package(tmp_path: Path) -> None:
    # The usual FastAPI project: its own `app` package in the working directory.
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text('WHOSE = "the user\'s"\n')
    check = (
        "import sys\n"
        "from lossmon import Client, AsyncClient, Logger\n"
        "import app\n"
        'assert app.WHOSE == "the user\'s", app.__file__\n'
        "server = {'fastapi', 'sqlalchemy', 'alembic', 'numpy', 'pydantic'} & set(sys.modules)\n"
        "assert not server, server\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_client_wheel_is_lossmon_with_httpx_only(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(
        REPO / "clients" / "python", source, ignore=shutil.ignore_patterns("*.egg-info")
    )
    wheel = build_wheel(source, tmp_path / "dist")
    names = top_level(wheel)
    assert {n for n in names if not n.endswith(".dist-info")} == {"lossmon"}
    with zipfile.ZipFile(wheel) as z:
        assert "lossmon/py.typed" in z.namelist()
        (metadata,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [
            line.split(":", 1)[1].strip()
            for line in z.read(metadata).decode().splitlines()
            if line.startswith("Requires-Dist:")
        ]
    assert [r.split(">")[0].split("<")[0].strip() for r in requires] == ["httpx"]


def test_server_wheel_ships_migrations_inside_app(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md", "alembic.ini"):
        shutil.copy(REPO / name, source / name)
    for name in ("app", "migrations"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    wheel = build_wheel(source, tmp_path / "dist")
    assert {n for n in top_level(wheel) if not n.endswith(".dist-info")} == {"app"}

    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    # Installed (not a checkout): migrate a fresh database from app/migrations.
    script = (
        "from app import migrate\n"
        "print(migrate.MIGRATIONS_DIR)\n"
        "migrate.upgrade('sqlite:///fresh.db')\n"
        "from sqlalchemy import create_engine\n"
        "engine = create_engine('sqlite:///fresh.db')\n"
        "assert migrate.current_revision(engine) == migrate.head_revision() is not None\n"
    )
    run = tmp_path / "run"
    run.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=run,
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == site / "app" / "migrations"


def test_app_client_is_a_deprecated_re_export() -> None:
    check = (
        "import warnings\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import app.client\n"
        "import lossmon\n"
        "assert app.client.Client is lossmon.Client\n"
        "assert app.client.ValidationFailed is lossmon.ValidationFailed\n"
        "assert [w.category for w in caught] == [DeprecationWarning], caught\n"
        "assert 'from lossmon import Client' in str(caught[0].message)\n"
    )
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
