"""What `pip install ./clients/python` brings into a fresh virtual environment.

    .venv/bin/python bench/client_size.py

Creates a venv in a temporary directory, installs the client distribution (from the
package index pip is configured with), then prints every installed distribution and the
size of site-packages without pip/setuptools (what the venv starts with). Target < 15 MB.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence")


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        started = time.monotonic()
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", str(REPO / "clients" / "python")],
            check=True,
        )
        took = time.monotonic() - started
        (site,) = (venv / "lib").glob("python*/site-packages")
        total = 0
        rows = []
        for entry in sorted(site.iterdir()):
            if entry.name.startswith(BASELINE) or entry.name == "__pycache__":
                continue
            n = size(entry) if entry.is_dir() else entry.stat().st_size
            total += n
            rows.append((entry.name, n))
        for name, n in rows:
            print(f"{n / 1e6:8.2f} MB  {name}")
        dists = [name for name, _ in rows if name.endswith(".dist-info")]
        print(f"{len(dists)} distributions, {total / 1e6:.2f} MB (target < 15 MB), {took:.1f} s")
        # From a directory holding its own `app` package, as a FastAPI service would.
        (Path(tmp) / "app").mkdir()
        (Path(tmp) / "app" / "__init__.py").write_text("")
        check = subprocess.run(
            [str(python), "-c", "import app; from lossmon import Client, AsyncClient, Logger"],
            cwd=tmp,
            capture_output=True,
            text=True,
        )
        print("import lossmon beside ./app:", "ok" if check.returncode == 0 else check.stderr)
        return 0 if total < 15e6 and check.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
