from __future__ import annotations

import pytest

from slmkit.engine.core import EngineCore
from slmkit.errors import LimitExceeded, TemplateError
from slmkit.pipe import EngineRequest, Failed, Finished, SamplingParams, TextDelta
from tests.unit.engine.fakes import FakeBackend


def run(core: EngineCore, request: EngineRequest) -> tuple[str, Finished]:
    text, finished = "", None
    for event in core.stream(request):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Finished):
            finished = event
        elif isinstance(event, Failed):
            raise event.error
    assert finished is not None
    return text, finished


def req(rid: str = "r", prompt: str | None = "hi", **sampling: object) -> EngineRequest:
    return EngineRequest(rid, SamplingParams(**sampling), prompt=prompt)  # type: ignore[arg-type]


def test_runs_to_end_of_generation() -> None:
    core = EngineCore(FakeBackend(b"Hello world"), None)
    text, done = run(core, req())
    assert text == "Hello world"
    assert done.reason == "stop"
    assert done.stats.completion_tokens == len(b"Hello world") + 1
    assert done.stats.prompt_tokens == 2


def test_max_tokens_gives_length() -> None:
    core = EngineCore(FakeBackend(), None)
    text, done = run(core, req(max_tokens=5))
    assert (text, done.reason, done.stats.completion_tokens) == ("Hello", "length", 5)


def test_stop_string_truncates_and_stops_early() -> None:
    backend = FakeBackend(b"Hello world and more")
    core = EngineCore(backend, None)
    text, done = run(core, req(stop=("wor",)))
    assert (text, done.reason) == ("Hello ", "stop")
    assert done.stats.completion_tokens == len("Hello wor")
    assert backend.released == ["r"]


def test_multibyte_characters_survive_token_splits() -> None:
    core = EngineCore(FakeBackend("Grüße 🌍".encode()), None)
    text, _ = run(core, req())
    assert text == "Grüße 🌍"


def test_chat_uses_template() -> None:
    backend = FakeBackend()
    core = EngineCore(backend, "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}>")
    run(core, EngineRequest("r", SamplingParams(), messages=({"role": "user", "content": "yo"},)))
    assert backend.tokenized == ["[user]yo>"]
    assert backend.prompt_of("r") == "[user]yo>"


def test_malicious_template_is_refused_at_add() -> None:
    core = EngineCore(FakeBackend(), "{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateError):
        core.add_request(EngineRequest("r", SamplingParams(), messages=({"role": "user", "content": "x"},)))
    assert not core.has_work


def test_prompt_longer_than_context_is_refused() -> None:
    core = EngineCore(FakeBackend(n_ctx=8), None)
    with pytest.raises(LimitExceeded, match="context window of 8"):
        core.add_request(req(prompt="x" * 8))


def test_max_tokens_capped_by_context() -> None:
    core = EngineCore(FakeBackend(b"a" * 100, n_ctx=10), None)
    _, done = run(core, req(prompt="abc", max_tokens=1000))
    assert (done.reason, done.stats.completion_tokens) == ("length", 7)


def test_abort_frees_the_request() -> None:
    backend = FakeBackend()
    core = EngineCore(backend, None)
    core.add_request(req("a"))
    core.step()
    events = core.abort("a")
    assert [type(e).__name__ for _, e in events] == ["Finished"]
    assert isinstance(events[0][1], Finished) and events[0][1].reason == "cancelled"
    assert backend.released == ["a"] and not core.has_work


def test_requests_queue_in_order() -> None:
    core = EngineCore(FakeBackend(b"ab"), None)
    core.add_request(req("a"))
    core.add_request(req("b"))
    order = []
    while core.has_work:
        order += [rid for rid, e in core.step() if isinstance(e, Finished)]
    assert order == ["a", "b"]


def test_empty_prompt_is_refused() -> None:
    core = EngineCore(FakeBackend(), None)
    with pytest.raises(Exception, match="empty"):
        core.add_request(req(prompt=""))


def test_ignore_eos_generates_max_tokens() -> None:
    core = EngineCore(FakeBackend(b"Hi"), None)
    text, done = run(core, req(max_tokens=6, ignore_eos=True))
    assert (done.reason, done.stats.completion_tokens) == ("length", 6)
    assert text.startswith("Hi")


def test_queue_time_is_measured_from_arrival_to_admission() -> None:
    ticks = iter(range(1000))
    core = EngineCore(FakeBackend(b"ab"), None, clock=lambda: float(next(ticks)))
    core.add_request(req("first"))
    core.add_request(req("second"))  # one slot: waits for the first
    done = {}
    while core.has_work:
        for rid, event in core.step():
            if isinstance(event, Finished):
                done[rid] = event.stats.queue_seconds
    assert done["first"] == 2.0  # arrived at tick 0 (second at 1); the first step started at tick 2
    assert done["second"] > done["first"]


def test_context_ids_outside_the_vocabulary_are_refused_before_batching() -> None:
    from slmkit.errors import InvalidRequest
    from slmkit.pipe import EngineRequest, SamplingParams

    backend = FakeBackend()
    core = EngineCore(backend, None)
    bad = EngineRequest("r", SamplingParams(max_tokens=2), prompt="hi", context=(5, 257))
    with pytest.raises(InvalidRequest, match="context: token id 257"):
        core.add_request(bad)
    assert not core.has_work


def drive(core: EngineCore, requests: list[EngineRequest], join_at: int = 0) -> dict[str, list[object]]:
    """Step the core until idle; the first request starts at once, the others join after
    ``join_at`` steps. Every request's events, by id."""
    events: dict[str, list[object]] = {r.request_id: [] for r in requests}
    core.add_request(requests[0])
    steps = 0
    while core.has_work or steps <= join_at:
        if steps == join_at:
            for r in requests[1:]:
                core.add_request(r)
        for rid, event in core.step():
            events[rid].append(event)
        steps += 1
        assert steps < 500
    return events


def answer(events: list[object]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def test_a_step_failed_by_one_request_fails_that_request_only() -> None:
    """A poisoned prompt joins two running streams; the step fails; the culprit is found by
    running each suspect alone, gets Failed, and the others finish with unchanged answers."""
    alone = answer(drive(EngineCore(FakeBackend(b"Hello world", n_parallel=3), None), [req("a")])["a"])
    backend = FakeBackend(b"Hello world", n_parallel=3, poison=b"!")
    core = EngineCore(backend, None)
    events = drive(core, [req("a"), req("b", prompt="yo"), req("bad", prompt="boom!")], join_at=3)
    assert answer(events["a"]) == answer(events["b"]) == alone
    assert isinstance(events["a"][-1], Finished) and isinstance(events["b"][-1], Finished)
    assert isinstance(events["bad"][-1], Failed) and len(events["bad"]) == 1
    # "a" had sampled 3 tokens when the step failed: its slot was replayed (prompt and its
    # tokens but the last), without sampling again
    replay = next(
        c for p in backend.plans for c in p.prefill if c.request_id == "a" and c.start == 0 and not c.sample
    )
    assert bytes(t - 1 for t in replay.tokens) == b"hi" + b"He"
    # the culprit ran alone before it failed the second time
    assert [c.request_id for c in backend.plans[-1].prefill] != ["bad"]
    solo = [p for p in backend.plans if any(c.request_id == "bad" for c in p.prefill)]
    assert len(solo) == 2 and [c.request_id for c in solo[-1].prefill] == ["bad"] and not solo[-1].decode
    assert core.step() == [] and not core.has_work


def test_a_failed_step_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Containment is silent to the innocent requests, not to the operator."""
    core = EngineCore(FakeBackend(b"ok", poison=b"!"), None)
    with caplog.at_level("WARNING", logger="slmkit.engine"):
        drive(core, [req("bad", prompt="boom!")])
    (record,) = caplog.records
    assert "decode step of 1 request(s) failed" in record.getMessage() and "simulated" in record.getMessage()


def test_a_failing_request_alone_fails_at_once_and_the_next_is_served() -> None:
    core = EngineCore(FakeBackend(b"ok", poison=b"!"), None)
    events = drive(core, [req("bad", prompt="boom!")])
    assert [type(e) for e in events["bad"]] == [Failed]
    text, done = run(core, req("next"))
    assert (text, done.reason) == ("ok", "stop")


def test_a_requests_num_ctx_bounds_its_prompt_and_answer_within_the_models_window() -> None:
    backend = FakeBackend(b"Hello world and much more", n_ctx=64)
    core = EngineCore(backend, None)
    # prompt "hi" (2 tokens) in a window of 8: at most 6 tokens of answer, ending with "length"
    text, done = run(core, req("a", context_window=8))
    assert (text, done.reason) == ("Hello ", "length")
    with pytest.raises(LimitExceeded, match="the request's num_ctx of 4"):
        core.add_request(req("b", prompt="hello", context_window=4))
    # a window larger than the model's is capped by it (no reload): the model's 64 apply
    text, done = run(core, req("c", context_window=100_000))
    assert (text, done.reason) == ("Hello world and much more", "stop")
    with pytest.raises(LimitExceeded, match="the context window of 64"):
        core.add_request(req("d", prompt="x" * 64, context_window=100_000))


def test_truncation_is_only_on_request_keeps_the_system_prompt_and_is_reported() -> None:
    backend = FakeBackend(b"ok", n_ctx=32)
    core = EngineCore(backend, "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}>")
    messages = ({"role": "system", "content": "S"}, {"role": "user", "content": "a" * 30 + "END"})
    prompt = "[system]S[user]" + "a" * 30 + "END>"
    with pytest.raises(LimitExceeded, match="truncate"):  # never silent: refused, and the way out named
        core.add_request(EngineRequest("r0", SamplingParams(max_tokens=4), messages=messages))
    _, done = run(core, EngineRequest("r", SamplingParams(max_tokens=4), messages=messages, truncate=0))
    assert done.stats.prompt_tokens == 32 - 4  # room left for the 4 tokens asked
    assert done.stats.dropped_tokens == len(prompt) - 28
    kept = backend.prompt_of("r")
    assert kept.startswith("[system]S") and kept.endswith("aaEND>")  # the oldest after the system prompt went
    _, capped = run(core, EngineRequest("k", SamplingParams(max_tokens=2), prompt="x" * 20, truncate=5))
    assert (capped.stats.prompt_tokens, capped.stats.dropped_tokens) == (5, 15)
    _, short = run(core, EngineRequest("s", SamplingParams(max_tokens=2), prompt="hi", truncate=0))
    assert short.stats.dropped_tokens == 0  # fits: nothing dropped
    long_system = ({"role": "system", "content": "S" * 40}, {"role": "user", "content": "hi"})
    with pytest.raises(LimitExceeded, match="the system prompt alone"):
        core.add_request(EngineRequest("ls", SamplingParams(max_tokens=4), messages=long_system, truncate=0))
