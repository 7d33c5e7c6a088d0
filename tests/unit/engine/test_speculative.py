"""Prompt-lookup speculation: the drafter, the scheduler's accounting, and the contract that
matters (an answer is exactly the one plain decoding gives, in fewer steps)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.engine.core import EngineCore
from slmkit.engine.scheduler import Scheduler, StepResult
from slmkit.engine.speculative import PromptLookup
from slmkit.pipe import EngineRequest, Finished, SamplingParams, TextDelta
from tests.unit.engine.fakes import FakeBackend


def lookup(tokens: list[int]) -> PromptLookup:
    return PromptLookup(tokens, sizes=(4, 3, 2))


def test_the_drafter_proposes_what_followed_the_latest_earlier_occurrence() -> None:
    assert lookup([1, 2, 3, 4, 5, 9, 1, 2, 3]).draft(3) == [4, 5, 9]
    # the latest occurrence wins over an older one
    assert lookup([1, 2, 7, 1, 2, 8, 1, 2]).draft(1) == [8]
    # the longest suffix that occurred before is used: (3, 1, 2) beats (1, 2)
    assert lookup([3, 1, 2, 5, 0, 1, 2, 6, 3, 1, 2]).draft(2) == [5, 0]
    assert lookup([1, 2, 3]).draft(4) == []  # nothing repeats
    assert lookup([1, 2, 1, 2]).draft(0) == []
    assert PromptLookup([1, 2, 9, 1, 2]).draft(4) == []  # by default a 2-gram match is chance


def test_a_match_at_the_end_continues_the_repetition() -> None:
    assert lookup([7, 7, 7]).draft(4) == [7, 7, 7, 7]
    assert lookup([1, 2, 3, 1, 2]).draft(4) == [3, 1, 2, 3]


def test_the_index_grows_with_the_history() -> None:
    drafter = lookup([5, 6])
    assert drafter.draft(2) == []
    drafter.extend([9, 5, 6])
    assert drafter.draft(2) == [9, 5]


def test_the_draft_length_follows_what_the_model_confirms() -> None:
    drafter = lookup([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3])
    assert len(drafter.draft(16)) == 4  # the starting length
    drafter.feedback(4, 4, most=16)
    assert len(drafter.draft(16)) == 6  # all confirmed: longer
    assert len(drafter.draft(5)) == 5  # the caller's limit still caps it
    drafter.feedback(6, 2, most=16)
    assert len(drafter.draft(16)) == 2  # cut to what was confirmed
    drafter.feedback(2, 2, most=3)
    assert drafter.length == 3  # never past the most allowed


def test_wholly_wrong_drafts_pause_drafting_longer_each_time() -> None:
    drafter = lookup([1, 2, 3, 1, 2])
    paused = []
    for _ in range(4):
        drafter.feedback(1, 0, most=8)
        steps = 0
        while not drafter.draft(8):
            steps += 1
        paused.append(steps)
    assert paused == [1, 2, 4, 8]
    drafter.feedback(1, 1, most=8)  # a confirmed guess ends the pauses
    assert drafter.draft(8)


def test_drafts_fit_the_budget_the_slot_and_max_tokens() -> None:
    s = Scheduler(num_slots=1, slot_capacity=12, max_batch_tokens=64, draft_tokens=8)
    s.add_request("r", [1, 2, 3, 1, 2, 3], max_tokens=4, speculate=True)
    first = s.schedule()
    s.update_from_output(first, StepResult(tokens={"r": 1}))
    plan = s.schedule()
    (item,) = plan.decode
    assert item.draft == (2, 3)  # max_tokens 4, one generated, one sampled now: 2 guesses at most
    assert plan.num_tokens == 3
    s.update_from_output(plan, StepResult(tokens={"r": 9}, accepted={"r": (2,)}))  # 3 was wrong
    assert s.slots[0].tokens == [1, 2, 3, 1, 2, 3, 1, 2]  # the rejected guess left the slot
    assert s.running["r"].output == [1, 2, 9]
    assert (s.running["r"].drafted, s.running["r"].accepted) == (2, 1)


def test_a_request_that_does_not_speculate_gets_no_draft() -> None:
    s = Scheduler(num_slots=1, slot_capacity=64, draft_tokens=8)
    s.add_request("r", [1, 2, 1, 2], max_tokens=10, speculate=False)
    s.update_from_output(s.schedule(), StepResult(tokens={"r": 1}))
    assert s.schedule().decode[0].draft == ()


def run(core: EngineCore, request: EngineRequest) -> tuple[str, Finished, int]:
    text, finished, steps = "", None, 0
    core.add_request(request)
    while core.has_work:
        steps += 1
        for _, event in core.step():
            if isinstance(event, TextDelta):
                text += event.text
            elif isinstance(event, Finished):
                finished = event
        for seq in core.scheduler.running.values():  # the slot holds exactly what it fed
            assert core.scheduler.slots[seq.slot].tokens[: len(seq.prompt)] == seq.prompt[: seq.computed]
            if seq.prefilled and seq.output:
                assert core.scheduler.slots[seq.slot].tokens == seq.prompt + seq.output[:-1]
    assert finished is not None
    return text, finished, steps


def req(prompt: str, **sampling: object) -> EngineRequest:
    return EngineRequest("r", SamplingParams(**sampling), prompt=prompt)  # type: ignore[arg-type]


def test_a_repetitive_answer_takes_fewer_steps_and_is_unchanged() -> None:
    script = b"abc abc abc abc abc abc abc abc"
    plain = run(EngineCore(FakeBackend(script), None), req("abc abc"))
    fast = run(EngineCore(FakeBackend(script), None, draft_tokens=4), req("abc abc"))
    assert fast[0] == plain[0] == script.decode()
    assert fast[1].stats.completion_tokens == plain[1].stats.completion_tokens
    assert fast[2] < plain[2] / 2
    assert fast[1].stats.accepted_tokens > 0
    assert fast[1].stats.draft_tokens >= fast[1].stats.accepted_tokens
    assert plain[1].stats.draft_tokens == 0


def test_stop_strings_and_max_tokens_cut_where_plain_decoding_cuts() -> None:
    script = b"abc abc abc abc abc abc"
    for sampling in ({"stop": ("c a",)}, {"max_tokens": 6}, {"max_tokens": 1}):
        plain = run(EngineCore(FakeBackend(script), None), req("abc abc", **sampling))
        fast = run(EngineCore(FakeBackend(script), None, draft_tokens=8), req("abc abc", **sampling))
        assert fast[0] == plain[0]
        assert fast[1].reason == plain[1].reason
    assert fast[1].stats.completion_tokens == 1


def test_logprob_requests_decode_one_token_per_step() -> None:
    backend = FakeBackend(b"abab abab")
    text, done, _ = run(EngineCore(backend, None, draft_tokens=4), req("abab", logprobs=2))
    assert text == "abab abab" and done.stats.draft_tokens == 0
    assert all(not d.draft for p in backend.plans for d in p.decode)


@settings(max_examples=150, deadline=None)
@given(
    script=st.binary(min_size=1, max_size=40).map(lambda b: bytes(x % 4 + 97 for x in b)),
    prompt=st.binary(min_size=1, max_size=12).map(lambda b: bytes(x % 4 + 97 for x in b)),
    k=st.integers(1, 6),
    max_tokens=st.integers(1, 50),
    n_ctx=st.integers(20, 64),
)
def test_any_answer_is_the_plain_one(
    script: bytes, prompt: bytes, k: int, max_tokens: int, n_ctx: int
) -> None:
    """Whatever the guesses, the text, finish reason and token count are plain decoding's,
    and every slot holds exactly the tokens fed so far (checked after each step)."""
    request = req(prompt.decode(), max_tokens=max_tokens)
    plain = run(EngineCore(FakeBackend(script, n_ctx=n_ctx), None), request)
    fast = run(EngineCore(FakeBackend(script, n_ctx=n_ctx), None, draft_tokens=k), request)
    assert fast[0] == plain[0]
    assert fast[1].reason == plain[1].reason
    assert fast[1].stats.completion_tokens == plain[1].stats.completion_tokens
    assert fast[2] <= plain[2]
