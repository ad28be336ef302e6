"""What a new user meets on the command line: --version, help naming defaults and
environment variables, a header on `keys list`, no Alembic chatter, a clear message for
a port in use, human-readable logs on a terminal (JSON otherwise), 422 reasons logged."""

from __future__ import annotations

import json
import logging
import os
import pty
import select
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import free_port


def _lossmon(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        **os.environ,
        "LOSSMON_DATABASE_URL": f"sqlite:///{cwd / 'cli.db'}",
        "COLUMNS": "120",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version(tmp_path: Path) -> None:
    out = _lossmon("--version", cwd=tmp_path)
    assert out.returncode == 0
    assert out.stdout.strip() == f"lossmon {version('lossmon')}"


def test_help_names_defaults_and_environment_variables(tmp_path: Path) -> None:
    out = _lossmon("serve", "--help", cwd=tmp_path)
    assert out.returncode == 0
    for text in ("LOSSMON_HOST", "LOSSMON_PORT", "127.0.0.1", "8000", "LOSSMON_DATABASE_URL"):
        assert text in out.stdout, text
    assert "sqlite:///./lossmon.db" in out.stdout
    for command in ("compute", "worker", "migrate"):
        assert "LOSSMON_DATABASE_URL" in _lossmon(command, "--help", cwd=tmp_path).stdout


def test_keys_list_has_a_header_and_compute_no_alembic_lines(tmp_path: Path) -> None:
    # The first command on a fresh SQLite file migrates it: silently.
    empty = _lossmon("keys", "list", cwd=tmp_path)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.splitlines() == ["id\tscope\tname\tcreated\trevoked"]
    assert "alembic" not in empty.stderr.lower()
    created = _lossmon("keys", "create", "--scope", "read", "--name", "ops", cwd=tmp_path)
    assert created.returncode == 0
    lines = _lossmon("keys", "list", cwd=tmp_path).stdout.splitlines()
    assert lines[0].split("\t") == ["id", "scope", "name", "created", "revoked"]
    assert lines[1].split("\t")[1:3] == ["read", "ops"]

    fresh = tmp_path / "fresh"
    fresh.mkdir()
    out = _lossmon("compute", cwd=fresh)
    assert out.returncode == 0, out.stderr
    assert "alembic" not in (out.stdout + out.stderr).lower()
    assert "Running upgrade" not in out.stderr
    # `migrate` is where the steps are the point: it still shows them.
    steps = _lossmon(
        "migrate",
        cwd=tmp_path / "fresh",
        env={"LOSSMON_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}"},
    )
    assert "Running upgrade" in steps.stderr


def test_port_in_use_is_one_clear_line_naming_lossmon_port(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        out = _lossmon("serve", "--port", str(port), cwd=tmp_path)  # exits, no hang
    assert out.returncode == 5
    assert f"port {port}" in out.stderr
    assert "LOSSMON_PORT" in out.stderr
    assert "Traceback" not in out.stderr
    # The environment variable is honoured the same way.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        out = _lossmon("serve", cwd=tmp_path, env={"LOSSMON_PORT": str(port)})
    assert out.returncode == 5
    assert "LOSSMON_PORT" in out.stderr


_LOG_ONE_LINE = (
    "import logging; from app.logging_config import configure; "
    "configure('INFO', {fmt!r}); logging.getLogger('lossmon.test').warning('hello there')"
)


def _log_line(fmt: str, *, tty: bool) -> str:
    code = _LOG_ONE_LINE.format(fmt=fmt)
    if not tty:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=30
        )
        return out.stderr.strip()
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal
        )
        os.close(terminal)
        chunks = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1)
            if ready:
                try:
                    data = os.read(controller, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        proc.wait(timeout=30)
        return b"".join(chunks).decode().strip()
    finally:
        os.close(controller)


def test_logs_are_text_on_a_terminal_and_json_otherwise() -> None:
    on_tty = _log_line("auto", tty=True)
    assert "hello there" in on_tty
    assert not on_tty.startswith("{")
    assert "WARNING" in on_tty and "lossmon.test" in on_tty

    piped = json.loads(_log_line("auto", tty=False))
    assert piped["message"] == "hello there"
    assert piped["level"] == "WARNING"
    # Asked for JSON: JSON even on a terminal.
    assert json.loads(_log_line("json", tty=True))["message"] == "hello there"


def test_validation_failures_are_logged_with_their_reasons(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    client.put("/v1/models/ctr", json={})
    with caplog.at_level(logging.INFO, logger="app.api.errors"):
        r = client.post(
            "/v1/models/ctr/predictions",
            json={
                "predictions": [
                    {"prediction_id": "a", "score": 0.5},
                    {"prediction_id": "b", "score": 7},
                ]
            },
        )
        assert r.status_code == 422
        bad_query = client.get("/v1/models/ctr/metrics", params={"segment": "nocolon"})
        assert bad_query.status_code == 422
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "app.api.errors"]
    assert any(
        "/v1/models/ctr/predictions -> 422" in line and "[1] score" in line for line in lines
    ), lines
    assert any("segment" in line and "-> 422" in line for line in lines), lines
