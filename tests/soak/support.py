"""Shared parts of the soak tests: sizes from the environment, real `lossmon`
processes, a tally of HTTP outcomes and the JSON report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import devserver
from tests.conftest import Server

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_795_132_800  # 2026-11-20T00:00:00Z


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def spawn_serve(
    database_url: str,
    tmp_path: Path,
    *,
    port: int | None = None,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = ("--no-scheduler",),
    timeout: float = 30.0,
) -> Server:
    """A real `lossmon serve`, polled often: the kill loop restarts it many times."""
    return devserver.start_serve(
        database_url,
        workdir=tmp_path,
        extra_env=extra_env,
        args=args,
        port=port,
        timeout_s=timeout,
        poll_s=0.02,
    )


def spawn_worker(
    database_url: str, tmp_path: Path, name: str, extra_env: dict[str, str]
) -> subprocess.Popen[bytes]:
    return devserver.spawn(
        ["worker"],
        env={"LOSSMON_DATABASE_URL": database_url, **extra_env},
        log_path=tmp_path / f"{name}.log",
        cwd=tmp_path,
    )


kill = devserver.kill
terminate = devserver.terminate


def run_cli(database_url: str, *argv: str, extra_env: dict[str, str] | None = None) -> str:
    """Run one `lossmon` command to completion; returns its output, fails on non-zero."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *argv],
        env={**os.environ, "LOSSMON_DATABASE_URL": database_url, **(extra_env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"lossmon {' '.join(argv)}: {done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)  # the request never left


@dataclass
class Tally:
    """Thread-safe counts of what the clients saw."""

    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    missing_retry_after: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def status(self, response: httpx.Response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code == 503 and "retry-after" not in response.headers:
                self.missing_retry_after += 1

    def error(self, exc: Exception) -> None:
        with self.lock:
            self.errors[type(exc).__name__] += 1

    @property
    def other_5xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if code >= 500 and code != 503)

    def as_dict(self) -> dict[str, Any]:
        return {
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "connection_errors": dict(self.errors),
            "other_5xx": self.other_5xx,
            "missing_retry_after": self.missing_retry_after,
        }


def report(request: pytest.FixtureRequest, name: str, figures: dict[str, Any]) -> Path:
    """Print the figures (visible with -s) and write them as JSON under the pytest
    tmp dir: <basetemp>/soak-reports/<name>.json."""
    base = request.getfixturevalue("tmp_path_factory").getbasetemp()
    out = Path(base) / "soak-reports"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True, default=str))
    print(f"\n[soak] {name}: {json.dumps(figures, sort_keys=True, default=str)}")
    print(f"[soak] report written to {path}")
    return path


def wait_for(predicate: Any, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
