"""`slm run` in a pseudo-terminal (pexpect), against the real server and default model: the
line editor's history, a \"\"\" block, /set parameter, Ctrl-C stopping the answer (and the
server's request) and returning to the prompt, /save making a model that answers."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration
PROMPT = "Send a message (/? for help)"  # the placeholder of a fresh, empty prompt
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _metric(server: Server, name: str) -> float:
    text = httpx.get(
        f"{server.url}/metrics/load" if name.startswith("vllm:") else f"{server.url}/metrics"
    ).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


@pytest.fixture
def terminal(server: Server) -> Iterator[pexpect.spawn]:
    env = {**server.env, "PROMPT_TOOLKIT_NO_CPR": "1", "TERM": "xterm", "COLUMNS": "100"}
    child = pexpect.spawn(sys.executable, ["-m", "slmkit", "run", MODEL], env=env, encoding="utf-8",
                          timeout=120, dimensions=(40, 100))  # fmt: skip
    child.expect_exact(PROMPT)
    yield child
    child.sendline("/bye")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before


def _answer(child: pexpect.spawn) -> str:
    """The text printed up to the next fresh prompt, without terminal escapes."""
    child.expect_exact(PROMPT)
    return ANSI.sub("", child.before)


def test_commands_block_and_history(terminal: pexpect.spawn, server: Server) -> None:
    child = terminal
    child.sendline("/?")
    assert "/save MODEL" in _answer(child)  # help, not a prompt for the model
    child.sendline("/set parameter temperature 0")
    assert "Set parameter 'temperature' to '0'" in _answer(child)
    child.sendline("/set parameter num_predict 24")
    _answer(child)
    child.sendline("/set verbose")
    _answer(child)
    child.sendline('"""What is the capital')
    child.expect_exact("...")  # the continuation prompt
    child.sendline('of France?"""')
    first = _answer(child)
    assert "Paris" in first
    tokens = int(re.search(r"output: (\d+) tokens", first).group(1))  # type: ignore[union-attr]
    assert 0 < tokens <= 24  # the session's num_predict reached the server
    child.sendline("Name one color.")
    assert _answer(child).strip()
    # the up arrow recalls the last line typed; Enter sends it again
    child.send("\x1b[A")
    child.expect(r"Name(\x1b\[C| )one(\x1b\[C| )color\.")  # redrawn (a space may be a cursor move)
    child.send("\r")
    assert _answer(child).strip()
    history = Path(server.env["SLM_MODELS"]).parent / "history"  # beside the store: ~/.slmkit/history
    assert "What is the capital" in history.read_text(encoding="utf-8")  # kept across sessions
    assert history.stat().st_mode & 0o077 == 0  # the owner's alone
    child.sendline("/set nohistory")
    assert "Set 'nohistory' mode." in _answer(child)
    child.sendline("/show system")  # typed while history is off: not kept
    _answer(child)
    assert "/show system" not in history.read_text(encoding="utf-8")


def test_ctrl_c_stops_the_answer_and_the_servers_request(terminal: pexpect.spawn, server: Server) -> None:
    child = terminal
    budget = 4000
    child.sendline(f"/set parameter num_predict {budget}")
    _answer(child)
    child.sendline("/set parameter temperature 0")
    _answer(child)
    before = _metric(server, "slm_generation_tokens_total")
    child.sendline("Count from 1 to 2000, one number per line.")
    deadline = time.monotonic() + 120
    while _metric(server, "vllm:num_requests_running") < 1:  # generating now
        assert time.monotonic() < deadline, "the answer never started"
        child.expect([r"\d", pexpect.TIMEOUT], timeout=0.2)
    child.expect(r"\d+\s+\d+")  # some of the answer is on screen
    child.sendcontrol("c")
    child.expect_exact(PROMPT, timeout=30)  # back at the prompt, the session goes on
    while _metric(server, "vllm:num_requests_running") > 0:
        assert time.monotonic() < deadline, "the server kept generating after Ctrl-C"
        child.expect([pexpect.TIMEOUT], timeout=0.2)
    assert _metric(server, "slm_generation_tokens_total") - before < budget  # cut short, not finished
    child.sendline("/show parameters")
    assert "num_predict" in _answer(child)


def test_save_makes_a_model_that_answers(terminal: pexpect.spawn, server: Server) -> None:
    child = terminal
    child.sendline("/set system You are a pirate. Always answer like a pirate.")
    assert "Set system message." in _answer(child)
    child.sendline("/set parameter num_predict 16")
    _answer(child)
    child.sendline("/save pirate-session")
    assert "Created new model 'pirate-session'" in _answer(child)
    shown = httpx.post(f"{server.url}/api/show", json={"model": "pirate-session"}).json()
    assert "pirate" in shown["system"] and "num_predict" in shown["parameters"]
    answer = httpx.post(
        f"{server.url}/api/chat",
        json={"model": "pirate-session", "messages": [{"role": "user", "content": "Hello"}], "stream": False},
        timeout=120,
    ).json()
    assert answer["message"]["content"].strip() and answer["eval_count"] <= 16
    httpx.request("DELETE", f"{server.url}/api/delete", json={"model": "pirate-session"})
