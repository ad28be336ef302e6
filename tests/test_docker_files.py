"""Dockerfile and docker-compose.yml, checked as far as a machine without a Docker
engine can: compose parses (`docker compose config`, or Debian's docker-compose), and
the image is multi-stage, runs as a non-root user and has a healthcheck on /healthz."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def _compose_command() -> list[str] | None:
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _compose(
    command: list[str], tmp_path: Path, *args: str, password: str | None
) -> subprocess.CompletedProcess[str]:
    """`compose config` with only the environment given here: an empty --env-file, so a
    developer's own .env cannot make the test pass or fail."""
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD",)}
    if password is not None:
        env["POSTGRES_PASSWORD"] = password
    return subprocess.run(
        [*command, "--env-file", str(env_file), "-f", str(REPO / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
    )


def test_compose_file_parses_with_the_services_we_document(tmp_path: Path) -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    password = "Ci0nlyPassw0rd"
    out = _compose(command, tmp_path, "config", "--services", password=password)
    assert out.returncode == 0, out.stderr
    assert set(out.stdout.split()) == {"postgres", "migrate", "api", "worker"}
    full = _compose(command, tmp_path, "config", password=password)
    assert full.returncode == 0, full.stderr
    assert "pg_isready" in full.stdout  # postgres healthcheck
    assert "service_completed_successfully" in full.stdout  # api/worker wait for migrate
    assert "--no-scheduler" in full.stdout
    config = yaml.safe_load(full.stdout)
    services = config["services"]
    # The password reaches PostgreSQL and every lossmon process from the environment.
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == password
    for name in ("migrate", "api", "worker"):
        url = services[name]["environment"]["LOSSMON_DATABASE_URL"]
        assert f":{password}@postgres:" in url, url
    # Every published port is on the host's loopback only; the API is checked for readiness.
    assert services["api"]["ports"]
    for name, service in services.items():
        ports = service.get("ports", [])
        assert all(
            (p.get("host_ip") if isinstance(p, dict) else str(p).split(":")[0]) == "127.0.0.1"
            for p in ports
        ), (name, ports)
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])


def test_compose_holds_no_literal_password_and_refuses_to_run_without_one(
    tmp_path: Path,
) -> None:
    raw = (REPO / "docker-compose.yml").read_text()
    for line in raw.splitlines():
        if line.lstrip().startswith("#"):
            continue
        match = re.search(r"^\s*\w*PASSWORD\w*:\s*(\S.*)$", line)
        if match:
            assert match.group(1).strip("\"'").startswith("${"), line
        for url in re.findall(r"postgresql\+psycopg://[^\s\"]+", line):
            assert re.match(r"postgresql\+psycopg://\w+:\$\{POSTGRES_PASSWORD", url), url
    command = _compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor docker-compose is installed")
    out = _compose(command, tmp_path, "config", password=None)
    assert out.returncode != 0
    assert "POSTGRES_PASSWORD" in out.stderr


def test_dockerfile_is_multistage_nonroot_with_healthcheck() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") >= 2
    assert "\nUSER lossmon" in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    # Everything the package needs at run time is inside the build context it copies.
    for path in ("app", "migrations", "pyproject.toml", "config"):
        assert path in text
