"""Run `lossmon` as a subprocess on a free loopback port and wait until it answers.

One implementation for everything that needs a real server next to it: `lossmon demo`,
the tests (HTTP behaviour through real uvicorn), the soak runs and the benchmarks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def spawn(
    argv: list[str], *, env: dict[str, str], log_path: Path, cwd: Path
) -> subprocess.Popen[bytes]:
    """`python -m app.cli <argv>` with `env` over this process's environment."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *argv],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )


def start_serve(
    database_url: str,
    *,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
    args: tuple[str, ...] = ("--no-scheduler",),
    port: int | None = None,
    log_path: Path | None = None,
    # Generous: on a loaded 2-core CI machine, importing the app alone can take 20 s+.
    timeout_s: float = 90.0,
    poll_s: float = 0.05,
    workers: int | None = 1,
) -> ServerProcess:
    """A real `lossmon serve` on 127.0.0.1, returned once /healthz answers 200.

    It runs in `workdir`, so anything it writes beside itself stays there. `workers`:
    one process by default (a SIGKILL then takes the whole server down); None leaves
    serve's production default; `--workers` in `args` wins."""
    port = port or free_port()
    if workers is not None and "--workers" not in args:
        args = (*args, "--workers", str(workers))
    log_path = log_path or workdir / f"server-{port}.log"
    process = spawn(
        ["serve", "--host", "127.0.0.1", "--port", str(port), *args],
        env={"LOSSMON_DATABASE_URL": database_url, **(extra_env or {})},
        log_path=log_path,
        cwd=workdir,
    )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}): {log_path.read_text()}")
        try:
            if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(poll_s)
    kill(process)
    raise RuntimeError(f"server did not start within {timeout_s}s: {log_path.read_text()}")


def kill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL and reap (no-op when it already exited)."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def terminate(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM (graceful shutdown), SIGKILL if it does not exit in time."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill(process)
