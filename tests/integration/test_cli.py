"""The `slm` command against a real server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import MODEL, Server


@pytest.fixture(scope="module")
def short(server: Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The default model with answers capped at 24 tokens: a sampled answer at the default
    budget can ramble for minutes on a busy machine, past the command's timeout."""
    modelfile = Path(tmp_path_factory.mktemp("short")) / "Modelfile"
    modelfile.write_text(f"FROM {MODEL}\nPARAMETER num_predict 24\n")
    server.cli("create", "short:1", "-f", str(modelfile))
    return "short:1"


def test_list_json(server: Server) -> None:
    models = json.loads(server.cli("list", "--json").stdout)
    assert MODEL in [m["name"] for m in models]


def test_list_human(server: Server) -> None:
    out = server.cli("list").stdout
    assert "NAME" in out and MODEL in out and "MB" in out


def test_run_one_prompt(server: Server, short: str) -> None:
    out = server.cli("run", short, "Say", "hello").stdout
    assert out.strip()


def test_run_reads_the_prompt_from_stdin(server: Server, short: str) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "slmkit", "run", short],
        env=server.env,
        input="Hi there\n/bye\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0
    assert result.stdout.strip()


def test_show_variants(server: Server) -> None:
    assert "im_start" in server.cli("show", MODEL, "--template").stdout
    assert f"FROM {MODEL}" in server.cli("show", MODEL, "--modelfile").stdout
    assert "Q4_1" in server.cli("show", MODEL).stdout


def test_ps_and_version_and_config(server: Server, short: str) -> None:
    server.cli("run", short, "hi")
    assert short in server.cli("ps").stdout
    assert "server version" in server.cli("version").stdout
    config = json.loads(server.cli("config", "--json").stdout)
    assert {c["name"] for c in config} >= {"SLM_HOST", "SLM_MODELS"}


def test_unknown_model_message(server: Server) -> None:
    result = server.cli("run", "no-such-model", "hi", check=False)
    assert result.returncode == 1
    assert "not found" in result.stderr and "Traceback" not in result.stderr


def test_no_server_message(server: Server) -> None:
    import subprocess
    import sys

    env = {**server.env, "SLM_HOST": "127.0.0.1:9"}
    result = subprocess.run(
        [sys.executable, "-m", "slmkit", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "no slmkit server" in result.stderr


def test_cp_and_rm(server: Server) -> None:
    server.cli("cp", MODEL, "mine:1")
    assert "mine:1" in server.cli("list").stdout
    server.cli("rm", "mine:1")
    assert "mine:1" not in server.cli("list").stdout


def test_serve_refuses_a_public_address_without_keys(server: Server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import subprocess
    import sys

    env = {**server.env, "SLM_KEYS_FILE": str(tmp_path / "none.json")}
    result = subprocess.run(
        [sys.executable, "-m", "slmkit", "serve", "--host", "0.0.0.0:1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "without an API key" in result.stderr and "--insecure" in result.stderr
