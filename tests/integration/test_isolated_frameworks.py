"""Agent frameworks whose pins conflict with the suite's own environment, each tested in a
virtual environment of its own, made once and kept (SLM_TEST_VENVS, default
~/.cache/slmkit/test-venvs): instructor (wants jiter<0.15, while the suite's openai 3.x wants
jiter>=0.16; in its venv pip picks openai 3.3) and LlamaIndex (llama-index-llms-openai-like
pins openai below 3). Each runs a script (tests/integration/isolated/) against the real
server and reports what it got."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent / "isolated"
VENVS = Path(os.environ.get("SLM_TEST_VENVS") or Path.home() / ".cache" / "slmkit" / "test-venvs")


def venv(name: str, requirements: list[str]) -> Path:
    """The python of a virtual environment with ``requirements``: made once, then reused
    (renamed into place only when complete, so an interrupted install is never used)."""
    key = hashlib.sha256("\n".join(requirements).encode()).hexdigest()[:12]
    folder = VENVS / f"{name}-{key}"
    python = folder / "bin" / "python"
    if (folder / ".complete").exists():
        return python
    VENVS.mkdir(parents=True, exist_ok=True)
    building = VENVS / f".{name}-{key}-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, timeout=300)
    pip = subprocess.run(
        [str(building / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", *requirements],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    if pip.returncode != 0:
        shutil.rmtree(building, ignore_errors=True)
        pytest.fail(f"installing {requirements} failed: {pip.stderr[-2000:]}")
    (building / ".complete").touch()
    try:
        building.rename(folder)
    except OSError:  # another run made it meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return python


def run(python: Path, script: str, server: Server) -> str:
    done = subprocess.run(
        [str(python), str(HERE / script), server.url, MODEL], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_instructor_extracts_structured_data_in_both_modes(server: Server) -> None:
    python = venv("instructor", ["instructor==1.17.0"])
    results = [json.loads(line) for line in run(python, "instructor_check.py", server).splitlines()]
    assert [r["mode"] for r in results] == ["tool_call", "json_schema_mode"]
    for r in results:
        assert r["city"]["name"].strip() and r["city"]["country"].strip(), r  # the schema filled
        assert "paris" in r["city"]["name"].lower() and "france" in r["city"]["country"].lower(), r


def test_llamaindex_completes_chats_streams_and_calls_a_tool(server: Server) -> None:
    python = venv("llamaindex", ["llama-index-llms-openai-like==0.8.1"])
    got = json.loads(run(python, "llamaindex_check.py", server))
    assert got["complete"].strip() and got["chat"].strip()
    assert got["stream_pieces"] > 1 and got["stream"].strip()
    assert got["tool"] == "get_weather" and isinstance(got["arguments"].get("city"), str)
