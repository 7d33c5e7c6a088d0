"""Any error on one request's own path ends that request alone: the engine and the worker
loop go on, and the other requests' answers are unchanged (no model, a scripted backend)."""

from __future__ import annotations

import threading
from multiprocessing import Pipe
from typing import Any

import pytest

from slmkit.engine.core import EngineCore
from slmkit.engine.embeddings import EmbeddingJobs
from slmkit.engine.scheduler import StepPlan, StepResult
from slmkit.engine.worker import _loop
from slmkit.errors import RequestFailed, SlmError
from slmkit.pipe import EngineRequest, Event, Failed, Finished, SamplingParams, TextDelta
from tests.unit.engine.fakes import FakeBackend

SURROGATE = "a\ud800b"  # valid JSON, not encodable as UTF-8


def req(rid: str, prompt: str = "hi", **sampling: Any) -> EngineRequest:
    return EngineRequest(rid, SamplingParams(**sampling), prompt=prompt)


def drain(core: EngineCore, events: dict[str, list[Event]] | None = None) -> dict[str, list[Event]]:
    events = {} if events is None else events
    for _ in range(10_000):
        if not core.has_work:
            return events
        for rid, event in core.step():
            events.setdefault(rid, []).append(event)
    raise AssertionError("the engine never ran out of work")


def step(core: EngineCore) -> dict[str, list[Event]]:
    events: dict[str, list[Event]] = {}
    for rid, event in core.step():
        events.setdefault(rid, []).append(event)
    return events


def text_of(events: list[Event]) -> str:
    assert isinstance(events[-1], Finished), events[-1]
    return "".join(e.text for e in events if isinstance(e, TextDelta))


class RaisingBackend(FakeBackend):
    """A backend whose Python code raises (not one of our errors) on one request's path."""

    def __init__(self, *, bad_byte: int, where: str, **kw: Any) -> None:
        super().__init__(**kw)
        self.bad = bad_byte + 1  # its token
        self.where = where

    def execute(self, plan: StepPlan) -> StepResult:
        if self.where == "execute" and any(self.bad in c.tokens for c in plan.prefill):
            raise KeyError("a sampler set-up bug")
        return super().execute(plan)

    def token_bytes(self, token: int) -> bytes:
        if self.where == "token_bytes" and token == self.bad:
            raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "a detokenizer bug")
        return super().token_bytes(token)


def test_an_unencodable_prompt_is_refused_alone_and_the_running_answer_goes_on() -> None:
    core = EngineCore(FakeBackend(b"Hello world", n_parallel=2), None)
    core.add_request(req("victim"))
    started = step(core)
    with pytest.raises(RequestFailed, match=r"reading the prompt: UnicodeEncodeError"):
        core.add_request(req("poison", SURROGATE))
    assert "poison" not in core.backend.sampling  # nothing was set up for it
    assert text_of(drain(core, started)["victim"]) == "Hello world"


def test_a_python_error_in_a_shared_step_fails_only_its_culprit() -> None:
    backend = RaisingBackend(bad_byte=ord("!"), where="execute", script=b"Hello world", n_parallel=2)
    core = EngineCore(backend, None)
    core.add_request(req("victim"))
    started = step(core)
    core.add_request(req("poison", "boom!"))
    events = drain(core, started)
    (failed,) = events["poison"]
    assert isinstance(failed, Failed) and isinstance(failed.error, RequestFailed)
    assert "running a step: KeyError" in str(failed.error) and "sampler set-up bug" not in str(failed.error)
    assert text_of(events["victim"]) == "Hello world"
    assert "poison" in backend.released


def test_a_python_error_decoding_one_answer_fails_only_that_answer() -> None:
    backend = RaisingBackend(bad_byte=ord("w"), where="token_bytes", script=b"Hello world", n_parallel=2)
    core = EngineCore(backend, None)
    core.add_request(req("a"))
    core.add_request(req("b", max_tokens=5))  # "Hello": never reaches the bad byte
    events = drain(core)
    assert isinstance(events["a"][-1], Failed) and "decoding the answer" in str(events["a"][-1].error)
    assert text_of(events["b"]) == "Hello"
    assert not core.scheduler.running
    assert text_of(drain_one(core, req("c", max_tokens=3))) == "Hel"  # the engine goes on


def drain_one(core: EngineCore, request: EngineRequest) -> list[Event]:
    core.add_request(request)
    return drain(core)[request.request_id]


class Encoding(FakeBackend):
    """Embeds as a real tokenizer would: the text is encoded first."""

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        for text in texts:
            text.encode()
        return super().embed(texts)


def test_embedding_errors_that_are_not_ours_answer_that_job_alone() -> None:
    jobs = EmbeddingJobs(Encoding())
    jobs.add(1, [SURROGATE])
    jobs.add(2, ["fine"])
    first, second = jobs.step(), jobs.step()
    assert first is not None and first[0] == "result_error" and isinstance(first[2], RequestFailed)
    assert second == ("result", 2, ([[1.0, 0.0, 0.0, 0.0]], 4))


def test_the_worker_loop_survives_poison_on_every_message_kind() -> None:
    """The real worker loop over a pipe: a poisoned generate, tokenize, detokenize and embed
    each get their own error; a victim's answer is whole; the loop is still running."""
    ours, theirs = Pipe()
    core = EngineCore(Encoding(b"Hello world", n_parallel=2), None)
    loop = threading.Thread(target=_loop, args=(theirs, core), daemon=True)
    loop.start()
    ours.send(("generate", req("victim")))
    ours.send(("generate", req("poison", SURROGATE)))
    ours.send(("tokenize", 1, SURROGATE, True))
    ours.send(("embed", 2, [SURROGATE], 0))
    ours.send(("detokenize", 3, [10**9]))
    answers: dict[Any, Any] = {}
    texts: list[str] = []
    while "victim" not in answers or len(answers) < 5:
        assert ours.poll(60), "the worker loop stopped answering"
        message = ours.recv()
        if message[0] == "events":
            for rid, event in message[1]:
                if isinstance(event, TextDelta) and rid == "victim":
                    texts.append(event.text)
                elif isinstance(event, Finished | Failed):
                    answers[rid] = event
        elif message[0] in ("result", "result_error"):
            answers[message[1]] = message
    assert isinstance(answers["victim"], Finished) and "".join(texts) == "Hello world"
    assert isinstance(answers["poison"], Failed)
    assert [answers[i][0] for i in (1, 2, 3)] == ["result_error"] * 3
    assert all(isinstance(answers[i][2], SlmError) for i in (1, 2, 3))
    assert loop.is_alive()
    ours.send(("shutdown",))
    loop.join(timeout=60)
    assert not loop.is_alive()
