"""A KV pool smaller than slots x context (SLM_KV_POOL): the scheduler keeps every slot's tokens
within it, dropping idle caches, then preempting (re-prefill, never a failure)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.engine.scheduler import Scheduler, StepPlan, StepResult


def prompt(n: int, base: int = 100) -> list[int]:
    return list(range(base, base + n))


class Cells:
    """What llama.cpp's cells would hold after each plan, kept apart from the scheduler's own
    bookkeeping: trims cut, chunks and decode tokens append at the positions the plan names."""

    def __init__(self, slots: int) -> None:
        self.held: list[list[int]] = [[] for _ in range(slots)]

    def apply(self, plan: StepPlan) -> None:
        for slot, keep in plan.trims:
            del self.held[slot][keep:]
        for source, target, keep in plan.copies:  # before this step's batch writes anything
            assert len(self.held[source]) >= keep
            self.held[target] = self.held[source][:keep]
        for chunk in plan.prefill:
            assert chunk.start == len(self.held[chunk.slot])
            self.held[chunk.slot].extend(chunk.tokens)
        for item in plan.decode:
            assert item.position == len(self.held[item.slot])
            self.held[item.slot].extend((item.token, *item.draft))

    @property
    def used(self) -> int:
        return sum(len(h) for h in self.held)


def token_for(request_id: str, n: int) -> int:
    """A deterministic 'model': the n-th token of an answer depends on the request only, so a
    preempted answer that resumed must come out the same as one that never was."""
    return 1000 + (hash(request_id) % 97) * 31 + n


def run(s: Scheduler, cells: Cells, steps: int = 2000) -> tuple[dict[str, list[int]], int]:
    answers: dict[str, list[int]] = {}
    most = 0
    for _ in range(steps):
        if not s.has_work:
            break
        plan = s.schedule()
        cells.apply(plan)
        most = max(most, cells.used)
        assert cells.used <= (s.pool_capacity or 10**9)
        tokens = {r: token_for(r, len(s.running[r].output)) for r in plan.sampled}
        for f in s.update_from_output(plan, StepResult(tokens=tokens)):
            answers[f.request_id] = [token_for(f.request_id, i) for i in range(f.num_generated)]
    assert not s.has_work, "work left: the pool deadlocked"
    return answers, most


def test_the_pool_caps_a_slots_capacity() -> None:
    s = Scheduler(num_slots=4, slot_capacity=4096, pool_capacity=1024)
    assert (s.pool_capacity, s.slot_capacity) == (1024, 1024)
    full = Scheduler(num_slots=4, slot_capacity=1024, pool_capacity=4096)  # no smaller than slots x context
    assert (full.pool_capacity, full.slot_capacity) == (0, 1024)


def test_idle_caches_go_first_least_recently_used_first() -> None:
    s = Scheduler(num_slots=3, slot_capacity=64, max_batch_tokens=64, pool_capacity=40)
    cells = Cells(3)
    for rid, base in (("old", 100), ("new", 300)):
        s.add_request(rid, prompt(15, base), 1)
        run(s, cells)
    assert [len(slot.tokens) for slot in s.slots[:2]] == [15, 15]
    s.add_request("c", prompt(15, 500), 1)  # 30 cached + 16 > 40: one cache must go
    plan = s.schedule()
    assert plan.trims == ((0, 0),)  # the older one
    assert s.preemptions == 0


def test_a_prompt_waits_until_the_pool_holds_it_whole() -> None:
    s = Scheduler(num_slots=2, slot_capacity=64, max_batch_tokens=8, pool_capacity=40)
    cells = Cells(2)
    s.add_request("a", prompt(20), 10)
    s.add_request("b", prompt(20, 300), 10)  # 21 + 21 cells > 40: b waits for a
    admitted_together = False
    for _ in range(30):
        if not s.has_work:
            break
        plan = s.schedule()
        cells.apply(plan)
        admitted_together |= len(s.running) == 2
        s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, 7)))
    assert not admitted_together and not s.has_work and s.preemptions == 0


def test_growing_answers_preempt_the_latest_admitted_which_resumes() -> None:
    s = Scheduler(num_slots=2, slot_capacity=64, max_batch_tokens=64, pool_capacity=48)
    cells = Cells(2)
    s.add_request("first", prompt(10), 30)
    s.add_request("second", prompt(10, 300), 30)  # 40 + 40 > 48: someone must step aside
    answers, most = run(s, cells)
    assert s.preemptions >= 1
    assert answers == {r: [token_for(r, i) for i in range(30)] for r in ("first", "second")}
    assert most <= 48


def test_an_interactive_request_preempts_background_work_for_memory() -> None:
    s = Scheduler(num_slots=3, slot_capacity=64, max_batch_tokens=64, pool_capacity=48)
    cells = Cells(3)
    s.add_request("batch", prompt(30), 40, priority=1)
    for _ in range(3):
        plan = s.schedule()
        cells.apply(plan)
        s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, 7)))
    s.add_request("chat", prompt(20, 300), 5)  # 33 held + 21 > 48
    plan = s.schedule()
    cells.apply(plan)
    assert [c.request_id for c in plan.prefill] == ["chat"]
    assert (0, 0) in plan.trims and "batch" not in s.running and s.preemptions == 1
    s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, 7)))
    answers, _ = run(s, cells)
    assert set(answers) == {"batch", "chat"}


def test_a_pool_full_of_idle_caches_still_admits() -> None:
    s = Scheduler(num_slots=4, slot_capacity=32, max_batch_tokens=64, pool_capacity=40)
    cells = Cells(4)
    for i in range(2):
        s.add_request(f"r{i}", prompt(19, 100 * (i + 1)), 2)  # 19 + 1 cells each
        run(s, cells)
    assert cells.used == 40
    s.add_request("late", prompt(30, 900), 3)
    answers, _ = run(s, cells)
    assert len(answers["late"]) == 3


@settings(max_examples=120, deadline=None)
@given(
    st.integers(1, 5),
    st.integers(2, 16),
    st.integers(32, 96),
    st.integers(0, 3),
    st.lists(
        st.tuples(
            st.integers(1, 28), st.integers(1, 12), st.integers(0, 3), st.integers(0, 1), st.integers(0, 20)
        ),
        min_size=1,
        max_size=14,
    ),
)
def test_the_pool_is_never_exceeded_and_no_answer_is_lost(
    slots: int, budget: int, pool: int, drafts: int, requests: list[tuple[int, int, int, int, int]]
) -> None:
    s = Scheduler(
        num_slots=slots, slot_capacity=32, max_batch_tokens=budget, draft_tokens=drafts, pool_capacity=pool
    )
    cells = Cells(slots)
    answers: dict[str, list[int]] = {}
    for now in range(3000):
        for i, (n, max_tokens, base, priority, arrives) in enumerate(requests):
            if arrives == now:
                s.add_request(f"r{i}", prompt(n, base * 7 + i), max_tokens, speculate=True, priority=priority)
        if not s.has_work and now > 20:
            break
        plan = s.schedule()
        cells.apply(plan)
        assert plan.num_tokens <= budget
        assert cells.used <= (s.pool_capacity or slots * 32)
        for seq in s.running.values():  # a slot holds a prefix of its sequence, never more
            held = s.slots[seq.slot].tokens
            assert held == cells.held[seq.slot] == (seq.prompt + seq.output)[: len(held)]
        tokens = {r: token_for(r, len(s.running[r].output)) for r in plan.sampled}
        for f in s.update_from_output(plan, StepResult(tokens=tokens)):  # every draft rejected
            answers[f.request_id] = [token_for(f.request_id, i) for i in range(f.num_generated)]
        for slot, held in enumerate(cells.held):  # the backend drops rejected drafts' cells
            del held[len(s.slots[slot].tokens) :]
    assert not s.has_work, "work left: the pool deadlocked"
    expected = {f"r{i}": min(max_tokens, 33 - n) for i, (n, max_tokens, *_) in enumerate(requests)}
    assert {r: len(a) for r, a in answers.items()} == expected


@settings(max_examples=120, deadline=None)
@given(
    st.integers(2, 5),
    st.integers(2, 48),
    st.sampled_from([0, 96, 160]),
    st.lists(
        st.tuples(
            st.integers(1, 30), st.integers(1, 8), st.integers(0, 2), st.integers(0, 1), st.integers(0, 12)
        ),
        min_size=2,
        max_size=12,
    ),
)
def test_prefixes_copied_from_busy_slots_are_exactly_what_the_copy_reads(
    slots: int, budget: int, pool: int, requests: list[tuple[int, int, int, int, int]]
) -> None:
    """Requests sharing prefixes (same base) arrive while others run: a copy takes only what
    the source held before the step, and every slot still holds a prefix of its sequence."""
    s = Scheduler(
        num_slots=slots, slot_capacity=32, max_batch_tokens=budget, pool_capacity=pool, share_prefixes=True
    )
    cells = Cells(slots)
    answers: dict[str, int] = {}
    for now in range(3000):
        for i, (n, max_tokens, base, priority, arrives) in enumerate(requests):
            if arrives == now:
                s.add_request(f"r{i}", prompt(n, base * 50), max_tokens, priority=priority)
        if not s.has_work and now > 12:
            break
        plan = s.schedule()
        cells.apply(plan)
        assert cells.used <= (s.pool_capacity or slots * 32)
        for seq in s.running.values():
            held = s.slots[seq.slot].tokens
            assert held == cells.held[seq.slot] == (seq.prompt + seq.output)[: len(held)]
        tokens = {r: token_for(r, len(s.running[r].output)) for r in plan.sampled}
        for f in s.update_from_output(plan, StepResult(tokens=tokens)):
            answers[f.request_id] = f.num_generated
    assert not s.has_work
    assert answers == {f"r{i}": min(mt, 33 - n) for i, (n, mt, *_) in enumerate(requests)}


def test_the_slot_a_prefix_is_copied_from_is_never_the_one_preempted_for_cells() -> None:
    s = Scheduler(
        num_slots=3, slot_capacity=256, max_batch_tokens=512, pool_capacity=260, share_prefixes=True
    )
    cells = Cells(3)
    system = prompt(100, 5000)
    s.add_request("other", prompt(80, 9000), 100, priority=1)
    cells.apply(plan := s.schedule())
    s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, 7)))
    s.add_request("lender", [*system, 1, 2], 100, priority=1)  # admitted last: the first victim
    while not all(r in s.running and s.running[r].output for r in ("other", "lender")):
        cells.apply(plan := s.schedule())
        s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, 7)))
    s.add_request("chat", [*system, 3, 4, 5, 6, 7, 8, 9, 10], 3)  # needs cells: someone must go
    plan = s.schedule()
    cells.apply(plan)
    ((source, _, keep),) = plan.copies
    assert "lender" in s.running and source == s.running["lender"].slot and keep == 100
    assert "other" not in s.running and s.preemptions == 1
    s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, 7)))
    answers, _ = run(s, cells)
    assert set(answers) == {"other", "lender", "chat"}


def test_a_batch_prompt_half_read_does_not_keep_a_chat_out_of_the_pool() -> None:
    """The batch prompt pauses while the chat waits; counting the rest of it against the chat's
    admission deadlocked (found by the property above): it may be preempted instead."""
    s = Scheduler(num_slots=4, slot_capacity=32, max_batch_tokens=5, pool_capacity=37)
    cells = Cells(4)
    s.add_request("batch", prompt(28), 5, priority=1)
    for _ in range(2):
        cells.apply(plan := s.schedule())
        s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, 7)))
    s.add_request("chat", prompt(27, 500), 5)  # 28 cells: the pool has 27 free
    answers, _ = run(s, cells)
    assert set(answers) == {"batch", "chat"}
