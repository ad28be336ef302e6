"""Schemathesis against a real server's /openapi.json, default checks, bounded examples:
0 failures. Run with a key (so auth is enforced) on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx

from app.auth import service as auth_service
from app.db import session_scope
from tests.conftest import Db, start_server, stop_server
from tests.notify.conftest import TEST_KEY

REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = os.environ.get("LOSSMON_SCHEMATHESIS_EXAMPLES", "25")


def test_schemathesis_finds_nothing(db: Db, tmp_path: Path) -> None:
    with session_scope(db.factory) as session:
        key = auth_service.create_key(
            session=session, scope="admin", name="schemathesis", now=datetime.now(UTC)
        ).key
    server = start_server(
        db.url,
        tmp_path,
        extra_env={"LOSSMON_WEBHOOK_ALLOW_PRIVATE": "true", "LOSSMON_SECRET_KEY": TEST_KEY},
    )
    try:
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.put(server.url + "/v1/models/ctr", json={}, headers=headers).status_code == 200
        out = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "--config-file",
                str(REPO / "schemathesis.toml"),
                "run",
                server.url + "/openapi.json",
                "--max-examples",
                MAX_EXAMPLES,
                "--seed",
                "20261124",
                "-H",
                f"Authorization: Bearer {key}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
    finally:
        stop_server(server)
    summary = out.stdout[-3000:]
    print(summary)
    cases = re.search(r"(\d+) generated", out.stdout)
    assert cases and int(cases.group(1)) > 500, summary
    assert out.returncode == 0, summary
    # The server never answered 500 during the run.
    assert " 500 " not in server.log_path.read_text()
