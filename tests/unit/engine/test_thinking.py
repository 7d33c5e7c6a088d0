"""Reasoning followed token by token (engine/thinking.py): reasoning tokens counted, and at a
budget the close marker forced in place of the samples, so the model goes on to answer."""

from __future__ import annotations

import dataclasses

from slmkit.engine.core import EngineCore
from slmkit.engine.thinking import Reasoning
from slmkit.pipe import EngineRequest, SamplingParams
from tests.unit.engine.fakes import FakeBackend
from tests.unit.engine.test_core import run

THOUGHT = b"<think>" + b"x" * 40 + b"</think>\n\nThe answer."
CLOSE = [1, 2, 3]


def request(budget: int | None, prompt: str = "hi", track: bool = True) -> EngineRequest:
    return EngineRequest("r", SamplingParams(max_tokens=200), prompt=prompt, think_budget=budget,
                         track_thinking=track)  # fmt: skip


def test_the_budget_forces_the_close_marker_and_the_answer_follows() -> None:
    core = EngineCore(FakeBackend(THOUGHT, n_ctx=256), None)
    text, done = run(core, request(8))
    assert text.startswith("<think>" + "x" * 8 + "</think>\n\n")  # 8 reasoning tokens, then closed
    assert done.stats.reasoning_tokens == 8
    assert done.reason == "stop"  # it went on to the end of the script: an answer after the close


def test_without_a_budget_the_thinking_is_counted_only() -> None:
    core = EngineCore(FakeBackend(THOUGHT, n_ctx=256), None)
    text, done = run(core, request(None))
    assert text == THOUGHT.decode()
    assert 40 <= done.stats.reasoning_tokens <= 40 + len("</think>")
    untracked = EngineCore(FakeBackend(THOUGHT, n_ctx=256), None)
    assert run(untracked, request(None, track=False))[1].stats.reasoning_tokens == 0


def test_an_answer_that_does_not_think_is_not_touched() -> None:
    core = EngineCore(FakeBackend(b"Plain answer, no thinking at all.", n_ctx=256), None)
    text, done = run(core, request(2))
    assert text == "Plain answer, no thinking at all." and done.stats.reasoning_tokens == 0


def test_a_prompt_that_opens_the_block_counts_from_the_first_token() -> None:
    core = EngineCore(FakeBackend(b"y" * 30 + b"</think>done", n_ctx=256), None)
    text, done = run(core, request(5, prompt="question <think>\n"))
    assert text.startswith("<think>" + "y" * 5 + "</think>\n\n") and done.stats.reasoning_tokens == 5
    zero = EngineCore(FakeBackend(b"y" * 30, n_ctx=256), None)
    text, done = run(
        zero, dataclasses.replace(request(0, prompt="q <think>"), sampling=SamplingParams(max_tokens=12))
    )
    assert text.startswith("<think></think>\n\n") and done.stats.reasoning_tokens == 0


def test_the_state_machine() -> None:
    r = Reasoning(3, CLOSE, opened=False)
    r.feed(1, "  ")
    r.feed(1, "<thi")
    assert r.state == "start"  # the open marker still coming
    r.feed(1, "nk>a")
    assert r.state == "thinking" and r.count == 1
    r.feed(1, "b")
    r.feed(1, "c")
    assert r.state == "closing" and [r.next_forced() for _ in CLOSE] == CLOSE and r.state == "answer"
    assert r.next_forced() is None
    closed = Reasoning(10, CLOSE, opened=True)
    closed.feed(1, "a</th")
    closed.feed(1, "ink>")
    assert closed.state == "answer" and closed.next_forced() is None  # closed by the model itself
