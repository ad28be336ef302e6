"""Dockerfile and docker-compose.yml, checked as far as a machine without a Docker
engine can: compose parses (`docker compose config`, or Debian's docker-compose), and
the image is multi-stage, runs as a non-root user and has a healthcheck on /healthz."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_parses_with_the_services_we_document() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    out = subprocess.run(
        [*command, "-f", str(REPO / "docker-compose.yml"), "config", "--services"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == {"postgres", "migrate", "api", "worker"}
    full = subprocess.run(
        [*command, "-f", str(REPO / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert full.returncode == 0, full.stderr
    assert "pg_isready" in full.stdout  # postgres healthcheck
    assert "service_completed_successfully" in full.stdout  # api/worker wait for migrate
    assert "--no-scheduler" in full.stdout


def test_dockerfile_is_multistage_nonroot_with_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    assert "\nUSER lossmon" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    # Everything the package needs at run time is inside the build context it copies.
    for path in ("app", "migrations", "pyproject.toml", "config"):
        assert path in text
