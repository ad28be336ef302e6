"""The README's Python examples ("Python client", "Send predictions from your service")
run as written against a real `lossmon serve` (SQLite and PostgreSQL); only the URL is
pointed at the test server."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Db, Server

README = Path(__file__).resolve().parent.parent.parent / "README.md"
SECTIONS = ("## Python client\n", "## Send predictions from your service\n")


def python_blocks() -> list[str]:
    text = README.read_text()
    blocks = []
    for heading in SECTIONS:
        section = text[text.index(heading) :]
        section = section[: section.index("\n## ", 1)]
        blocks += re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)
    return blocks


def run(block: str, url: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(block.replace("http://127.0.0.1:8000", url), "README.md", "exec"), namespace)
    return namespace


def test_readme_client_examples_run(db: Db, server: Server, monkeypatch: Any, capsys: Any) -> None:
    monkeypatch.delenv("LOSSMON_API_KEY", raising=False)
    client_block, service_block, batch_block = python_blocks()

    run(client_block, server.url)
    assert db.count("predictions") == 1 and db.count("monitors") == 1

    service = run(service_block, server.url)
    with TestClient(service["app"]) as http:
        for i in range(3):
            answer = http.post(f"/predict/web-{i}", json={"age": 31.0})
            assert answer.status_code == 200 and answer.json() == {"score": 0.8}
        assert http.post("/clicked/web-1").status_code == 200
    monitor = service["monitor"]
    assert monitor.close(timeout=30)
    stats = monitor.stats()
    assert (stats.logged, stats.sent, stats.dropped, stats.failed) == (4, 4, 0, 0)

    run(batch_block, server.url)
    assert "IngestResult(accepted=99, duplicates=0)" in capsys.readouterr().out
    assert db.count("predictions") == 1 + 3 + 99
    assert db.count("actuals") == 1 + 1
