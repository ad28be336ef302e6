"""README.md runs as written.

Every ```bash / ```sh / ```python block runs, in the order of the file, against a fresh
`lossmon serve` on SQLite (blocks fenced ```text, ```console, ```json, ... are
illustrative and are not run; a fence without a language is refused so that each block
says which it is). Shell blocks share one environment (variables set in one are seen by
the next and by Python blocks), `curl` fails on an HTTP error status, and `localhost:8000`
is the test server's address. Every relative link of the README resolves in the repo.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from app import devserver

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
RUN = {"bash", "sh", "shell", "python"}
BLOCK_TIMEOUT_S = 180

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


@dataclass
class Block:
    lang: str
    code: str
    line: int  # 1-based line of the opening fence


def blocks(text: str) -> list[Block]:
    out: list[Block] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group("fence"), m.group("info").strip().split(" ")[0].lower()
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        out.append(Block(lang, "\n".join(body) + "\n", start + 1))
        i += 1
    return out


def test_every_fenced_block_says_whether_it_runs() -> None:
    unlabeled = [b.line for b in blocks(README.read_text()) if not b.lang]
    assert unlabeled == [], (
        f"README.md lines {unlabeled}: fence every block with a language: "
        "bash/sh/python (run by this test, in order) or text/console (illustrative)"
    )


def test_relative_links_resolve_inside_the_repo() -> None:
    text = README.read_text()
    # Links and images, outside code blocks.
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    targets = re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose)
    assert targets, "no links found: the pattern is wrong"
    broken = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # absolute URL or in-page anchor
        path = (README.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(REPO) or not path.exists():
            broken.append(target)
    assert broken == []
    # The documents README refers to are in the repo, linked, not "in the shared docs".
    for doc in ("docs/API.md", "docs/architecture.md", "docs/principles.md"):
        assert doc in targets, doc


# Shell prelude: strict mode, variables exported to later blocks, and a curl that fails
# on an HTTP error status (curl -s exits 0 on a 401 or a 409, which would hide exactly
# the mistakes this test exists to catch) while still printing the body.
PRELUDE = r"""
set -euo pipefail
set -a
curl() {
  local out status
  out=$(command curl -sS -w '\n__STATUS__%{http_code}' "$@") || return $?
  status=${out##*__STATUS__}
  printf '%s\n' "${out%$'\n'__STATUS__*}"
  if [ "$status" -ge 400 ]; then
    echo "README: HTTP $status from: curl $*" >&2
    return 22
  fi
}
"""


def _run(block: Block, index: int, workdir: Path, env: dict[str, str], port: int) -> None:
    code = block.code.replace("localhost:8000", f"localhost:{port}").replace(
        "127.0.0.1:8000", f"127.0.0.1:{port}"
    )
    state = workdir / "readme-env.sh"
    if block.lang == "python":
        script = workdir / f"block-{index}.py"
        script.write_text(code)
        command = (
            f"set -a; source {shlex.quote(str(state))}; "
            f"exec {shlex.quote(sys.executable)} {shlex.quote(str(script))}"
        )
    else:
        script = workdir / f"block-{index}.sh"
        script.write_text(
            PRELUDE
            + f"source {shlex.quote(str(state))}\n"
            + code
            + f"\nexport -p > {shlex.quote(str(state))}\n"
        )
        command = f"exec bash {shlex.quote(str(script))}"
    out = subprocess.run(
        ["bash", "-c", command],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )
    assert out.returncode == 0, (
        f"README.md block at line {block.line} ({block.lang}) failed ({out.returncode}):\n"
        f"{code}\n--- stdout:\n{out.stdout[-3000:]}\n--- stderr:\n{out.stderr[-3000:]}"
    )


def test_readme_runs_in_order_against_a_fresh_server(tmp_path: Path) -> None:
    runnable = [b for b in blocks(README.read_text()) if b.lang in RUN]
    assert len(runnable) >= 8, "README lost its examples?"
    venv = REPO / ".venv"
    if not (venv / "bin" / "lossmon").exists():
        pytest.skip("no .venv in the repo: run `make dev` first")
    # A new user's working directory: the repo's .venv, nothing else of ours.
    (tmp_path / ".venv").symlink_to(venv)
    for name in ("clients", "config"):
        if (REPO / name).exists():
            (tmp_path / name).symlink_to(REPO / name)
    url = f"sqlite:///{tmp_path / 'lossmon.db'}"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOSSMON_") and k not in ("PYTHONPATH",)
    }
    env.update(
        {
            "LOSSMON_DATABASE_URL": url,
            "LOSSMON_SECRET_KEY_FILE": str(tmp_path / "lossmon.secret"),
            "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            "COLUMNS": "120",
        }
    )
    (tmp_path / "readme-env.sh").write_text("")
    server = devserver.start_serve(
        url,
        workdir=tmp_path,
        extra_env={
            "LOSSMON_SECRET_KEY_FILE": env["LOSSMON_SECRET_KEY_FILE"],
            "LOSSMON_LOG_LEVEL": "WARNING",
        },
        args=(),  # as `make run`: the scheduler runs in the server
    )
    port = int(server.url.rsplit(":", 1)[1])
    try:
        for index, block in enumerate(runnable):
            _run(block, index, tmp_path, env, port)
    finally:
        devserver.terminate(server.process)
    log = server.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
