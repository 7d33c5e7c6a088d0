"""The documentation's runnable blocks, run as a reader would, against a real server.

Each block marked ``<!-- docs-test: run -->`` (tests/docs_blocks.py) is written to a file and
run (Python with this interpreter, shell with bash -e) in a scratch folder: a copy of the
example's folder for an example's README, else an empty one holding the ``requests.jsonl``
that docs/batch.md assumes. The server is this test's own (its own store, so what the blocks
store or delete touches no other test). What a reader would have differently is all that
changes: the address 127.0.0.1:11435 becomes this server's, and ``slm serve &`` lines are
dropped (the server is already running). Keys go to a scratch keys file the server does not
read, so a block that creates keys does not switch authentication on for the next one."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmkit.store import ModelStore
from slmkit.store.default import ensure_default_model
from tests.docs_blocks import ROOT, Block, blocks
from tests.integration.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.integration
RUNNABLE = [b for b in blocks() if b.mark == "run"]
SERVE = re.compile(r"^\s*slm serve\s*&.*$", re.MULTILINE)
REQUESTS = [
    {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
     "body": {"model": "smollm2:135m", "messages": [{"role": "user", "content": text}], "max_tokens": 8}}
    for i, text in enumerate(["Say hi.", "Name a color."])
]  # fmt: skip


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    models = tmp_path_factory.mktemp("docs-models")
    ensure_default_model(ModelStore(models))
    server = start_server(models, tmp_path_factory.mktemp("docs-logs") / "server.log")
    yield server
    stop_server(server)


def _workdir(block: Block, tmp: Path) -> Path:
    if block.path.parent.parent == ROOT / "examples":
        return Path(shutil.copytree(block.path.parent, tmp / block.path.parent.name))
    (tmp / "requests.jsonl").write_text("".join(json.dumps(r) + "\n" for r in REQUESTS))
    return tmp


@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_the_block_runs_as_written(block: Block, docs_server: Server, tmp_path: Path) -> None:
    address = docs_server.url.removeprefix("http://")
    code = block.code.replace("127.0.0.1:11435", address).replace("localhost:11435", address)
    work = _workdir(block, tmp_path)
    script = tmp_path / ("block.py" if block.python else "block.sh")
    script.write_text(code if block.python else SERVE.sub("", code))
    env = {
        **docs_server.env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SLM_URL": docs_server.url,  # the examples' setting
        "SLM_KEYS_FILE": str(tmp_path / "keys.json"),
    }
    command = [sys.executable, str(script)] if block.python else ["bash", "-e", "-o", "pipefail", str(script)]
    run = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)  # fmt: skip
    output = f"--- stdout\n{run.stdout}\n--- stderr\n{run.stderr}"
    assert run.returncode == 0, f"{block.id} failed:\n{code}\n{output}"
    assert "Traceback" not in run.stderr, run.stderr
