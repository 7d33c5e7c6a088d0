"""The scheduler, driven with fabricated step results (no model)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.engine.scheduler import Scheduler, StepPlan, StepResult
from slmkit.errors import ServerBusy

TOKEN = 7


def step(s: Scheduler, eog: set[str] | None = None) -> tuple[StepPlan, list[tuple[str, str]]]:
    plan = s.schedule()
    result = StepResult(tokens=dict.fromkeys(plan.sampled, TOKEN), end_of_generation=frozenset(eog or set()))
    return plan, [(f.request_id, f.reason) for f in s.update_from_output(plan, result)]


def prompt(n: int, base: int = 100) -> list[int]:
    return list(range(base, base + n))


def test_one_slot_is_fifo() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("a", prompt(3), 2)
    s.add_request("b", prompt(3, 200), 1)
    plan, done = step(s)
    assert [c.request_id for c in plan.prefill] == ["a"] and plan.sampled == ("a",)
    plan, done = step(s)
    assert [d.request_id for d in plan.decode] == ["a"] and done == [("a", "length")]
    plan, done = step(s)
    assert plan.sampled == ("b",) and done == [("b", "length")]
    assert not s.has_work


def test_admission_is_fifo_and_bounded_by_slots() -> None:
    s = Scheduler(num_slots=2)
    for r in "abcd":
        s.add_request(r, prompt(2, ord(r) * 10), 10)
    plan, _ = step(s)
    assert [c.request_id for c in plan.prefill] == ["a", "b"]
    plan, _ = step(s, eog={"a"})
    assert [d.request_id for d in plan.decode] == ["a", "b"]
    plan, _ = step(s)
    assert [c.request_id for c in plan.prefill] == ["c"] and [d.request_id for d in plan.decode] == ["b"]
    assert [q.request_id for q in s.waiting] == ["d"]


def test_decoding_sequences_all_advance_every_step() -> None:
    s = Scheduler(num_slots=4)
    for r in "abcd":
        s.add_request(r, prompt(4, ord(r) * 10), 50)
    step(s)
    for _ in range(10):
        plan, _ = step(s)
        assert sorted(d.request_id for d in plan.decode) == list("abcd")


def test_chunked_prefill_respects_budget_and_never_stalls_decodes() -> None:
    s = Scheduler(num_slots=3, max_batch_tokens=8)
    s.add_request("short", prompt(2), 100)
    step(s)
    s.add_request("long", prompt(20, 500), 5)
    plans = []
    while any(not x.prefilled for x in s.running.values()) or s.waiting:
        plan, _ = step(s)
        plans.append(plan)
        assert plan.num_tokens <= 8
        assert [d.request_id for d in plan.decode] == ["short"]
    chunks = [c for p in plans for c in p.prefill]
    assert [len(c.tokens) for c in chunks] == [7, 7, 6]
    assert [c.start for c in chunks] == [0, 7, 14]
    assert [c.sample for c in chunks] == [False, False, True]


def test_newcomer_gets_prefill_budget_while_others_decode() -> None:
    s = Scheduler(num_slots=8, max_batch_tokens=16)
    for i in range(6):
        s.add_request(f"r{i}", prompt(3, 1000 * (i + 1)), 100)
    step(s)
    step(s)
    s.add_request("late", prompt(5, 9000), 10)
    plan, _ = step(s)
    assert len(plan.decode) == 6
    assert [c.request_id for c in plan.prefill] == ["late"] and plan.prefill[0].sample


def test_positions_follow_slot_contents() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("a", prompt(3), 3)
    step(s)
    plan, _ = step(s)
    assert plan.decode[0].position == 3 and plan.decode[0].token == TOKEN
    plan, _ = step(s)
    assert plan.decode[0].position == 4
    assert s.slots[0].tokens == [*prompt(3), TOKEN, TOKEN]


def test_prefix_of_an_idle_slot_is_reused() -> None:
    s = Scheduler(num_slots=2)
    history = prompt(10)
    s.add_request("turn1", history, 2)
    while s.has_work:
        step(s)
    held = list(s.slots[0].tokens)
    turn2 = [*held, 1, 2, 3]
    s.add_request("turn2", turn2, 1)
    plan, done = step(s)
    (chunk,) = plan.prefill
    assert chunk.slot == 0 and chunk.start == len(held) and chunk.tokens == (1, 2, 3)
    assert plan.trims == ()
    assert done[0][0] == "turn2"


def test_diverging_prompt_trims_the_slot() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("a", prompt(6), 1)
    step(s)
    s.add_request("b", [*prompt(3), 55, 56], 1)
    plan, _ = step(s)
    assert plan.trims == ((0, 3),)
    assert plan.prefill[0].start == 3 and plan.prefill[0].tokens == (55, 56)


def test_identical_prompt_still_evaluates_one_token() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("a", prompt(5), 1)
    step(s)
    s.add_request("b", prompt(5), 1)
    plan, _ = step(s)
    assert plan.trims == ((0, 4),)
    assert plan.prefill[0].tokens == (104,) and plan.prefill[0].sample


def test_finished_reports_cached_tokens() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("a", prompt(5), 1)
    step(s)
    s.add_request("b", [*prompt(5), 9], 1)
    plan = s.schedule()
    (f,) = s.update_from_output(plan, StepResult(tokens={"b": 1}))
    assert f.cached == 5


def test_prefers_best_prefix_then_least_recently_used() -> None:
    s = Scheduler(num_slots=3)
    s.add_request("x", prompt(4, 10), 1)
    s.add_request("y", prompt(4, 20), 1)
    step(s)
    s.add_request("z", prompt(4, 20), 1)
    plan, _ = step(s)
    assert plan.prefill[0].slot == 1  # holds z's prefix
    s.add_request("w", prompt(4, 90), 1)
    plan, _ = step(s)
    assert plan.prefill[0].slot == 2  # empty slot, never used


def test_a_shared_header_does_not_evict_another_conversation_while_a_slot_is_empty() -> None:
    """Two chats share only their template's first tokens: each keeps a slot of its own, and
    each next turn finds its whole history (llama-server's slot similarity, 0.1)."""
    s = Scheduler(num_slots=2)
    header = [1, 2, 3]
    a, b = [*header, *prompt(60, 100)], [*header, *prompt(60, 500)]
    s.add_request("a1", a, 1)
    while s.has_work:
        step(s)
    s.add_request("b1", b, 1)
    plan, _ = step(s)
    assert plan.prefill[0].slot == 1 and plan.trims == ()  # the empty slot, not a's
    while s.has_work:
        step(s)
    s.add_request("a2", [*s.slots[0].tokens, 9], 1)
    plan, _ = step(s)
    assert plan.prefill[0].slot == 0 and plan.prefill[0].tokens == (9,)  # all of a's history kept


def test_end_of_generation_is_stop_and_max_tokens_is_length() -> None:
    s = Scheduler()
    s.add_request("a", prompt(2), 10)
    _, done = step(s, eog={"a"})
    assert done == [("a", "stop")]
    s.add_request("b", prompt(2), 3)
    counts = 0
    while s.has_work:
        step(s)
        counts += 1
    assert counts == 3


def test_full_slot_finishes_with_length() -> None:
    s = Scheduler(num_slots=1, slot_capacity=6)
    s.add_request("a", prompt(4), 100)
    reasons = []
    while s.has_work:
        _, done = step(s)
        reasons += done
    assert reasons == [("a", "length")]
    assert len(s.slots[0].tokens) <= 6


def test_queue_limit_counts_requests_beyond_free_slots() -> None:
    s = Scheduler(num_slots=2, max_waiting=2)
    for r in "abcd":  # two take the free slots, two wait
        s.add_request(r, prompt(1), 5)
    with pytest.raises(ServerBusy, match="busy"):
        s.add_request("e", prompt(1), 1)
    step(s)  # a and b now hold the slots; c and d still wait
    with pytest.raises(ServerBusy):
        s.add_request("e", prompt(1), 1)


def test_cancel_running_and_waiting_frees_slots() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("a", prompt(2), 5)
    s.add_request("b", prompt(2, 50), 5)
    step(s)
    finished = s.finish_requests(["a", "b"], "cancelled")
    assert sorted((f.request_id, f.num_generated) for f in finished) == [("a", 1), ("b", 0)]
    assert not s.has_work and s.slots[0].owner is None
    s.add_request("c", prompt(2, 70), 1)
    plan, _ = step(s)
    assert plan.sampled == ("c",)


def test_cancel_mid_prefill_keeps_slot_consistent() -> None:
    s = Scheduler(num_slots=1, max_batch_tokens=4)
    s.add_request("a", prompt(10), 5)
    step(s)
    s.finish_requests(["a"], "cancelled")
    assert s.slots[0].tokens == prompt(4)  # exactly what the executed chunk put in the KV


def test_result_for_aborted_request_is_ignored() -> None:
    s = Scheduler()
    s.add_request("a", prompt(2), 5)
    plan = s.schedule()
    s.finish_requests(["a"], "cancelled")
    assert s.update_from_output(plan, StepResult(tokens={"a": 1})) == []


def test_duplicate_ids_and_oversized_prompts_rejected() -> None:
    s = Scheduler(slot_capacity=4)
    s.add_request("a", prompt(1), 1)
    with pytest.raises(ValueError):
        s.add_request("a", prompt(1), 1)
    with pytest.raises(ValueError):
        s.add_request("b", prompt(5), 1)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(2, 12),
    st.lists(st.tuples(st.integers(1, 15), st.integers(1, 6), st.integers(0, 3)), min_size=1, max_size=12),
)
def test_invariants_hold_under_random_load(
    slots: int, budget: int, requests: list[tuple[int, int, int]]
) -> None:
    s = Scheduler(num_slots=slots, slot_capacity=32, max_batch_tokens=budget)
    for i, (n, max_tokens, base) in enumerate(requests):
        s.add_request(f"r{i}", prompt(n, base * 7), max_tokens)
    finished: dict[str, int] = {}
    for _ in range(500):
        if not s.has_work:
            break
        plan = s.schedule()
        assert plan.num_tokens <= budget
        owners = [slot.owner for slot in s.slots if slot.owner]
        assert len(owners) == len(set(owners)) == len(s.running)
        assert all(len(slot.tokens) <= 32 for slot in s.slots)
        for f in s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, TOKEN))):
            finished[f.request_id] = f.num_generated
    assert not s.has_work
    assert finished == {f"r{i}": mt for i, (_, mt, _) in enumerate(requests)}


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 4),
    st.integers(2, 12),
    st.lists(
        st.tuples(
            st.integers(1, 15), st.integers(1, 6), st.integers(0, 3), st.integers(0, 1), st.integers(0, 20)
        ),
        min_size=1,
        max_size=12,
    ),
)
def test_preemption_loses_nothing_under_random_load_of_both_priorities(
    slots: int, budget: int, requests: list[tuple[int, int, int, int, int]]
) -> None:
    s = Scheduler(num_slots=slots, slot_capacity=32, max_batch_tokens=budget)
    finished: dict[str, int] = {}
    for now in range(600):
        for i, (n, max_tokens, base, priority, arrives) in enumerate(requests):
            if arrives == now:
                s.add_request(f"r{i}", prompt(n, base * 7 + i), max_tokens, priority=priority)
        if not s.has_work and now > 20:
            break
        plan = s.schedule()
        assert plan.num_tokens <= budget
        owners = [slot.owner for slot in s.slots if slot.owner]
        assert len(owners) == len(set(owners)) == len(s.running)
        for seq in s.running.values():  # a slot holds a prefix of its sequence, never more
            held = s.slots[seq.slot].tokens
            assert held == (seq.prompt + seq.output)[: len(held)]
        if any(not q.priority for q in s.waiting):  # an interactive request waits only behind others
            assert all(not q.priority for q in s.running.values()) or any(
                slot.owner is None for slot in s.slots
            )
        for f in s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, TOKEN))):
            finished[f.request_id] = f.num_generated
    assert not s.has_work
    assert finished == {f"r{i}": mt for i, (_, mt, *_) in enumerate(requests)}


def test_rewind_replays_what_each_slot_held_and_continues_the_answer() -> None:
    s = Scheduler(num_slots=2, max_batch_tokens=4)
    s.add_request("a", prompt(3), 10)
    s.add_request("b", prompt(6, 200), 10)
    for _ in range(3):
        step(s)  # a: prefilled and decoding; b: prefilled in chunks
    held = {slot.owner: list(slot.tokens) for slot in s.slots}
    a_out = list(s.running["a"].output)
    s.rewind()
    assert all(not slot.tokens for slot in s.slots)
    replayed: dict[str, list[int]] = {}
    while any(not seq.prefilled for seq in s.running.values()):
        plan, _ = step(s)
        for c in plan.prefill:
            replayed.setdefault(c.request_id, []).extend(c.tokens)
            assert not c.sample  # both had sampled already: a replay yields no new token
    # each slot holds again exactly what it held; the last sampled token is fed by the next decode
    assert replayed["a"] == held["a"] and s.running["a"].output[: len(a_out)] == a_out
    assert replayed["b"] == held["b"]
    plan, _ = step(s)
    assert [d.request_id for d in plan.decode if d.request_id == "a"] == ["a"]


def test_solo_plans_one_request_and_admits_nobody() -> None:
    s = Scheduler(num_slots=3)
    s.add_request("a", prompt(2), 10)
    s.add_request("b", prompt(2, 200), 10)
    step(s)
    s.add_request("c", prompt(2, 300), 10)
    s.solo = "b"
    plan, _ = step(s)
    assert [d.request_id for d in plan.decode] == ["b"] and not plan.prefill
    s.solo = None
    plan, _ = step(s)
    assert {d.request_id for d in plan.decode} == {"a", "b"} and [c.request_id for c in plan.prefill] == ["c"]


def test_a_scored_prompt_is_read_whole_in_small_pieces_and_never_from_the_cache() -> None:
    from slmkit.engine.scheduler import SCORED_TOKENS_PER_STEP

    s = Scheduler(num_slots=1, max_batch_tokens=512)
    prompt = list(range(1, 301))
    s.add_request("warm", prompt, max_tokens=1)
    plan = s.schedule()
    s.update_from_output(plan, StepResult(tokens={"warm": 7}))  # the slot now holds the prompt
    s.add_request("scored", prompt, max_tokens=1, score_prompt=True)
    chunks = []
    while not any(c.sample for c in chunks):
        plan = s.schedule()
        (chunk,) = plan.prefill
        chunks.append(chunk)
        s.update_from_output(plan, StepResult(tokens={"scored": 7} if chunk.sample else {}))
    assert chunks[0].start == 0  # read again: cached positions would have no logits
    assert all(len(c.tokens) <= SCORED_TOKENS_PER_STEP for c in chunks)
    assert [t for c in chunks for t in c.tokens] == prompt
    targets = [t for c in chunks for t in c.targets]
    assert targets == prompt[1:]  # each position scores the token after it, across pieces


# -- priorities: batch jobs (background) yield to interactive requests ---------------------


def test_interactive_requests_are_admitted_before_background_ones_that_came_first() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("bg1", prompt(2), 1, priority=1)
    s.add_request("bg2", prompt(2, 200), 1, priority=1)
    s.add_request("chat", prompt(2, 300), 1)
    order = []
    while s.has_work:
        plan, _ = step(s)
        order.extend(c.request_id for c in plan.prefill)
    assert order == ["chat", "bg1", "bg2"]  # FIFO among the background ones


def test_background_requests_leave_the_last_free_slot_to_interactive_ones() -> None:
    s = Scheduler(num_slots=3)
    for r in ("b1", "b2", "b3"):
        s.add_request(r, prompt(2, ord(r[1]) * 10), 50, priority=1)
    plan, _ = step(s)
    assert [c.request_id for c in plan.prefill] == ["b1", "b2"]  # b3 waits: one slot stays free
    s.add_request("chat", prompt(2, 900), 5)
    plan, _ = step(s)
    assert [c.request_id for c in plan.prefill] == ["chat"]


def test_one_slot_is_shared_in_arrival_order_of_priorities() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("bg", prompt(2), 3, priority=1)
    plan, _ = step(s)  # with one slot a background request may take it: there is no other
    assert plan.sampled == ("bg",)


def test_background_sequences_pause_while_an_interactive_prompt_prefills() -> None:
    s = Scheduler(num_slots=4, max_batch_tokens=512)
    s.add_request("bg1", prompt(4), 50, priority=1)
    s.add_request("bg2", prompt(4, 300), 50, priority=1)
    step(s)
    plan, _ = step(s)
    assert sorted(d.request_id for d in plan.decode) == ["bg1", "bg2"]
    s.add_request("chat", prompt(40, 600), 5)
    plan, _ = step(s)  # only the interactive prompt: its first token comes from this step
    assert [c.request_id for c in plan.prefill] == ["chat"] and not plan.decode and plan.sampled == ("chat",)
    plan, _ = step(s)  # then everyone decodes together
    assert sorted(d.request_id for d in plan.decode) == ["bg1", "bg2", "chat"]


def test_background_prompts_prefill_in_small_pieces() -> None:
    from slmkit.engine.scheduler import BACKGROUND_TOKENS_PER_STEP

    s = Scheduler(num_slots=2, max_batch_tokens=512)
    s.add_request("bg", prompt(300), 5, priority=1)
    sizes = []
    while not s.running or not s.running["bg"].prefilled:
        plan, _ = step(s)
        sizes.append(sum(len(c.tokens) for c in plan.prefill))
    assert max(sizes) == BACKGROUND_TOKENS_PER_STEP and sum(sizes) == 300
    s.add_request("chat", prompt(300, 1000), 5)
    plan, _ = step(s)
    assert [len(c.tokens) for c in plan.prefill] == [300]  # interactive prompts are not capped


def test_an_interactive_request_takes_the_only_slot_from_a_background_one_which_then_resumes() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("bg", prompt(5), 4, priority=1)
    step(s)
    step(s)  # bg has two tokens: its prompt and one of them are in the slot
    s.add_request("chat", prompt(2, 300), 1)
    plans, finished = [], []
    while s.has_work and len(plans) < 10:
        plan, done = step(s)
        plans.append(plan)
        finished += done
    assert not s.has_work and all(not p.empty for p in plans)  # never an idle step (no deadlock)
    assert plans[0].sampled == ("chat",)  # at once, not after the batch line
    replay = plans[1].prefill[0]
    assert replay.request_id == "bg" and not replay.sample
    assert list(replay.tokens) == [*prompt(5), TOKEN][replay.start :]  # what its slot held
    assert [p.sampled for p in plans[2:]] == [("bg",), ("bg",)]
    assert finished == [("chat", "length"), ("bg", "length")]  # four tokens in all, none failed


def test_the_background_sequence_with_least_to_read_again_is_preempted() -> None:
    s = Scheduler(num_slots=3)
    s.add_request("long", prompt(300), 50, priority=1)
    s.add_request("short", prompt(10, 1000), 50, priority=1)  # takes the second slot (one is kept free)
    for _ in range(20):
        step(s)
    s.add_request("chat1", prompt(4, 5000), 5)
    s.add_request("chat2", prompt(4, 6000), 5)  # one slot is free: one of them needs another
    plan, _ = step(s)
    assert sorted(c.request_id for c in plan.prefill) == ["chat1", "chat2"]
    assert "short" not in s.running and "long" in s.running
    assert s.waiting[0].request_id == "short" and s.waiting[0].replay is not None


def test_cancelling_a_preempted_request_reports_its_answer_so_far() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("bg", prompt(3), 10, priority=1)
    for _ in range(4):
        step(s)
    s.add_request("chat", prompt(2, 300), 5)
    step(s)
    (fin,) = s.finish_requests(["bg"], "cancelled")
    assert fin.num_generated == 4 and fin.reason == "cancelled"


# -- images: runs of one negative placeholder (engine/backends/media.py) ------------------------
IMG, OTHER = -5, -9


def test_an_image_run_is_prefilled_whole_and_first_in_its_chunk() -> None:
    s = Scheduler(num_slots=1, max_batch_tokens=4)
    s.add_request("a", [1, 2, 3, IMG, IMG, IMG, IMG, IMG, IMG, 4, 5, OTHER, OTHER, 6], 1)
    chunks = []
    while s.has_work:
        plan, _ = step(s)
        chunks += [c.tokens for c in plan.prefill]
    # text up to the image; the image whole (over the budget of 4) then text up to the budget;
    # text stops before the next image
    assert chunks == [(1, 2, 3), (IMG,) * 6, (4, 5), (OTHER, OTHER, 6)]


def test_an_image_run_may_exceed_the_budget_but_text_after_it_waits() -> None:
    s = Scheduler(num_slots=1, max_batch_tokens=2)
    s.add_request("a", [IMG] * 5 + [1, 2, 3], 1)
    plan, _ = step(s)
    assert plan.prefill[0].tokens == (IMG,) * 5


@given(
    st.lists(st.one_of(st.integers(1, 50), st.sampled_from([IMG, OTHER])), min_size=1, max_size=60),
    st.integers(1, 8),
)
@settings(max_examples=200, deadline=None)
def test_no_chunk_ever_splits_or_trails_into_an_image_run(tokens: list[int], budget: int) -> None:
    tokens = [*tokens, 1]  # a prompt never ends with an image (the engine refuses it)
    s = Scheduler(num_slots=1, max_batch_tokens=budget, slot_capacity=100)
    s.add_request("a", tokens, 1)
    done = 0
    while s.has_work:
        plan, _ = step(s)
        for c in plan.prefill:
            assert c.start == done and c.tokens == tuple(tokens[c.start : c.start + len(c.tokens)])
            assert all(t >= 0 for t in c.tokens[c.tokens.count(c.tokens[0]) if c.tokens[0] < 0 else 0 :])
            end = c.start + len(c.tokens)
            assert end == len(tokens) or tokens[end] >= 0 or tokens[end] != tokens[end - 1]  # not mid-run
            done = end
    assert done == len(tokens)


def test_a_cached_prefix_stops_before_an_image_it_would_cut() -> None:
    s = Scheduler(num_slots=1, max_batch_tokens=64)
    first = [1, 2, IMG, IMG, IMG, 3]
    s.add_request("a", first, 1)
    while s.has_work:
        step(s)
    # the same image at the same place, then a different question: the image is reused whole
    s.add_request("b", [1, 2, IMG, IMG, IMG, 9, 9], 1)
    plan, _ = step(s)
    assert plan.prefill[0].start == 5 and plan.prefill[0].tokens == (9, 9)
    while s.has_work:
        step(s)
    # a prompt that would keep only part of a run (an image of another size) starts before it
    s.add_request("c", [1, 2, IMG, IMG, 4], 1)
    plan, _ = step(s)
    assert plan.prefill[0].start == 2 and plan.prefill[0].tokens[0] == IMG


def test_drafts_never_guess_an_image_placeholder() -> None:
    s = Scheduler(num_slots=1, max_batch_tokens=64, draft_tokens=4)
    s.add_request("a", [1, 2, IMG, IMG, 3, 1, 2, IMG, IMG, 3, 1], 8, speculate=True)
    for _ in range(6):
        plan, _ = step(s)
        for d in plan.decode:
            assert all(t >= 0 for t in d.draft)


# -- sliding-window caches: a slot's floor (StepResult.floors) ------------------------------------
def test_a_cached_prefix_shorter_than_the_slots_floor_is_read_again_from_the_start() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("a", prompt(40), 1)
    plan = s.schedule()
    s.update_from_output(plan, StepResult(tokens={"a": TOKEN}, floors={0: 30}))  # window kept: 20..39
    s.add_request("b", [*prompt(25), 999], 1)  # shares 25 tokens: before the floor
    plan = s.schedule()
    assert plan.trims == ((0, 0),) and plan.prefill[0].start == 0
    assert s.slots[0].floor == 0  # emptied: everything is held again
    s.update_from_output(plan, StepResult(tokens={"b": TOKEN}, floors={0: 0}))
    s.add_request("c", [*prompt(25), 999, 5, 6], 1)  # all of b's 26 held: reused
    plan = s.schedule()
    assert plan.prefill[0].start == 26


def test_a_prefix_at_or_past_the_floor_is_reused() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("a", prompt(40), 1)
    plan = s.schedule()
    s.update_from_output(plan, StepResult(tokens={"a": TOKEN}, floors={0: 30}))
    s.add_request("b", [*prompt(40), 1, 2], 1)
    plan = s.schedule()
    assert plan.trims == () and plan.prefill[0].start == 40  # the whole conversation so far


def test_rewind_resets_floors() -> None:
    s = Scheduler(num_slots=1)
    s.add_request("a", prompt(40), 5)
    plan = s.schedule()
    s.update_from_output(plan, StepResult(tokens={"a": TOKEN}, floors={0: 30}))
    s.rewind()
    assert s.slots[0].floor == 0 and s.slots[0].tokens == []


def test_a_prefix_a_busy_slot_holds_is_copied_into_a_free_one() -> None:
    from slmkit.engine.scheduler import COPY_MIN

    system = prompt(COPY_MIN + 40)
    for share in (True, False):
        s = Scheduler(num_slots=3, max_batch_tokens=512, share_prefixes=share)
        s.add_request("a", [*system, 1, 2, 3], 50)
        step(s)
        step(s)  # a decodes: its slot holds the system prompt and more
        s.add_request("b", [*system, 4, 5], 5)
        plan, _ = step(s)
        (chunk,) = plan.prefill
        if share:
            assert plan.copies == ((s.running["a"].slot, chunk.slot, len(system)),)
            assert chunk.start == len(system) and chunk.tokens == (4, 5)
            assert s.running["b"].cached == len(system)
        else:
            assert plan.copies == () and chunk.start == 0


def test_no_copy_for_a_few_shared_tokens_or_from_what_the_source_writes_this_step() -> None:
    from slmkit.engine.scheduler import COPY_MIN

    s = Scheduler(num_slots=3, max_batch_tokens=512, share_prefixes=True)
    s.add_request("a", prompt(COPY_MIN - 1), 50)
    step(s)
    s.add_request("b", [*prompt(COPY_MIN - 1), 9], 5)
    plan, _ = step(s)
    assert plan.copies == ()  # too few tokens to be worth a copy
    long = prompt(300, 1000)
    s = Scheduler(num_slots=3, max_batch_tokens=100, share_prefixes=True)
    s.add_request("a", long, 5)
    step(s)  # a holds 100 tokens, reads 100 more next step
    s.add_request("b", [*long, 9], 5)
    plan, _ = step(s)
    ((source, _, keep),) = plan.copies  # b came first (an interactive newcomer before a's next piece)
    assert source == s.running["a"].slot
    assert keep == 100  # what a held before the step, not the piece it reads in it


def test_a_background_request_copies_only_what_the_source_held_before_its_piece_this_step() -> None:
    from slmkit.engine.scheduler import BACKGROUND_TOKENS_PER_STEP as PIECE

    long = prompt(10 * PIECE, 1000)
    s = Scheduler(num_slots=3, max_batch_tokens=512, share_prefixes=True)
    s.add_request("a", long, 5, priority=1)
    for _ in range(3):
        step(s)  # a holds 3 pieces
    s.add_request("b", [*long, 9], 5, priority=1)
    plan, _ = step(s)  # a reads its 4th piece first, then b is admitted
    assert [c.request_id for c in plan.prefill] == ["a", "b"]
    ((source, _, keep),) = plan.copies
    assert source == s.running["a"].slot and keep == 3 * PIECE  # not the piece a writes now
