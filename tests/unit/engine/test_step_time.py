"""Steps planned by time: the cost model (engine/stepcost.py) and the scheduler using it, with
a fabricated cost function standing for the model (time comes in as data, no clock)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.engine.scheduler import (
    ARRIVAL_STEP,
    BACKGROUND_PATIENCE,
    BACKGROUND_STEP,
    BACKGROUND_TOKENS_PER_STEP,
    PROGRESS_TOKENS,
    SCORED_TOKENS_PER_STEP,
    SHORT_PROMPT,
    STREAM_STEP,
    PrefillChunk,
    Scheduler,
    StepPlan,
    StepResult,
)
from slmkit.engine.stepcost import MIN_SEEN, POSITION_UNIT, StepCosts, StepShape, chunk_attended

TOKEN = 7


class Model:
    """A step's true cost: fixed + per decode token + per prompt token + attention."""

    def __init__(self, fixed: float, decode: float, prompt: float, position: float) -> None:
        self.coef = (fixed, decode, prompt, position)

    def seconds(self, shape: StepShape) -> float:
        return sum(c * x for c, x in zip(self.coef, shape.features(), strict=True))

    def of(self, plan: StepPlan) -> float:
        return self.seconds(Scheduler._shape(plan.decode, plan.prefill))


# SmolLM2-like on 2 cores: 10 ms a step, 1 ms a decode token, 0.5 ms a prompt token,
# attention 40 ms per 64 Ki token-positions
SMALL = Model(0.010, 0.001, 0.0005, 0.040)


def run(s: Scheduler, model: Model, eog: set[str] | None = None) -> StepPlan:
    plan = s.schedule()
    s.update_from_output(
        plan, StepResult(tokens=dict.fromkeys(plan.sampled, TOKEN), end_of_generation=frozenset(eog or ()))
    )
    if not plan.empty:
        s.observe(plan, model.seconds(Scheduler._shape(plan.decode, plan.prefill)))
    return plan


def short_tail(model: Model, chunk: PrefillChunk, prompt_length: int) -> bool:
    """Whether the rest of an interactive prompt, from this chunk on, reads in SHORT_PROMPT
    one-token decodes or less (such a rest goes whole, as far as the token budget allows)."""
    rest = prompt_length - chunk.start
    cost = model.seconds(StepShape(prefill=rest, attended=chunk_attended(chunk.start, rest)))
    return cost - model.seconds(StepShape()) <= SHORT_PROMPT * model.seconds(StepShape(decode=1)) * 1.05


def taught(model: Model = SMALL, slots: int = 4) -> Scheduler:
    """A scheduler that has seen enough steps of both kinds to plan by time."""
    s = Scheduler(num_slots=slots, slot_capacity=8192, max_batch_tokens=512)
    for i in range(MIN_SEEN + 2):  # one, two, three sequences at a time: every feature varies
        for j in range(1 + i % 3):
            s.add_request(f"warm{i}.{j}", list(range(1000 * j, 1000 * j + 40 + 30 * i)), 3 + 2 * j)
        while s.has_work:
            run(s, model)
    assert s.costs.ready
    return s


def test_the_fit_recovers_a_linear_cost() -> None:
    costs = StepCosts()
    for d in (1, 2, 3, 4):
        for p, start in ((0, 0), (16, 0), (64, 500), (256, 2000), (512, 100)):
            shape = StepShape(decode=d, prefill=p, attended=d * 300 + chunk_attended(start, p))
            costs.observe(shape, SMALL.seconds(shape))
    coef = costs.coefficients()
    assert coef is not None
    for got, want in zip(coef, SMALL.coef, strict=True):
        assert got == pytest.approx(want, rel=1e-3, abs=1e-7)


def test_predictions_wait_for_both_kinds_of_step() -> None:
    costs = StepCosts()
    for _ in range(50):
        costs.observe(StepShape(decode=1, attended=10), 0.01)
    assert costs.predict(StepShape(decode=1)) is None and costs.prompt_tokens_within(1.0, 0) is None
    for n in range(1, MIN_SEEN + 1):
        costs.observe(StepShape(prefill=10 * n, attended=chunk_attended(0, 10 * n)), 0.01 + 0.0005 * 10 * n)
    assert costs.ready and costs.predict(StepShape(decode=1)) == pytest.approx(0.01, rel=0.05)


def test_prompt_tokens_within_a_time_inverts_the_prediction() -> None:
    costs = StepCosts()
    for p, start in (
        (0, 0),
        (0, 900),
        (0, 50),
        (0, 2000),
        (32, 0),
        (128, 1000),
        (512, 3000),
        (200, 0),
        (64, 64),
    ):
        shape = StepShape(decode=1 if p < 100 else 0, prefill=p, attended=chunk_attended(start, p) + 50)
        costs.observe(shape, SMALL.seconds(shape))
    for start in (0, 1000, 4000):
        n = costs.prompt_tokens_within(0.02, start)
        assert n is not None and n > 0

        def spent(k: int, start: int = start) -> float:
            return SMALL.coef[2] * k + SMALL.coef[3] * chunk_attended(start, k) / POSITION_UNIT

        assert spent(n) <= 0.02 * 1.01 and spent(n + 1) > 0.02 * 0.99  # the most tokens that fit
    later = costs.prompt_tokens_within(0.02, 4000)
    assert later is not None and later < (costs.prompt_tokens_within(0.02, 0) or 0)  # attention costs


def test_nonsense_measurements_are_ignored() -> None:
    costs = StepCosts()
    costs.observe(StepShape(decode=1), 0.0)
    costs.observe(StepShape(decode=1), -1.0)
    costs.observe(StepShape(), 1.0)
    assert costs._decode == costs._prefill == type(costs._decode)()


def test_a_long_prompt_beside_a_stream_goes_in_pieces_that_keep_its_pace() -> None:
    s = taught()
    s.add_request("stream", list(range(10, 30)), 5000)
    run(s, SMALL)  # its prompt
    alone = SMALL.of(run(s, SMALL))  # one decode step alone
    s.add_request("long", list(range(1000, 5000)), 1)
    steps = 0
    while "long" in s.running or any(q.request_id == "long" for q in s.waiting):
        plan = run(s, SMALL)
        steps += 1
        assert [d.request_id for d in plan.decode] == ["stream"]  # never stalled
        chunk = plan.prefill[0]
        extra = (
            SMALL.coef[2] * PROGRESS_TOKENS
            + SMALL.coef[3] * chunk_attended(chunk.start, PROGRESS_TOKENS) / POSITION_UNIT
        )
        one = SMALL.coef[2] + SMALL.coef[3] * (chunk.start + len(chunk.tokens)) / POSITION_UNIT  # rounding
        within = SMALL.of(plan) <= STREAM_STEP * alone * 1.02 + one or len(chunk.tokens) <= PROGRESS_TOKENS
        assert within or short_tail(SMALL, chunk, 4000), (SMALL.of(plan), alone, extra)
        assert len(chunk.tokens) >= PROGRESS_TOKENS or chunk.sample
    assert steps < 4000 // PROGRESS_TOKENS + 2  # it advanced every step


def test_without_a_stream_a_long_interactive_prompt_goes_in_pieces_an_arrival_can_wait_for() -> None:
    s = taught()
    beat = SMALL.seconds(StepShape(decode=1))
    s.add_request("long", list(range(1000, 3000)), 1)
    plan = run(s, SMALL)
    (chunk,) = plan.prefill
    assert PROGRESS_TOKENS < len(chunk.tokens) < 512
    assert SMALL.of(plan) <= ARRIVAL_STEP * beat * 1.05


def test_a_newcomers_short_prompt_goes_before_a_long_prompts_next_piece() -> None:
    s = taught()
    s.add_request("long", list(range(1000, 5000)), 1)
    run(s, SMALL)  # the long prompt's first piece
    s.add_request("chat", list(range(10, 40)), 5)
    plan = run(s, SMALL)
    assert plan.prefill[0].request_id == "chat" and plan.prefill[0].sample  # read whole, first
    assert "chat" in [d.request_id for d in run(s, SMALL).decode]


def test_background_only_steps_stay_within_a_few_decodes() -> None:
    s = taught()
    beat = SMALL.seconds(StepShape(decode=1))
    for i in range(3):
        s.add_request(f"b{i}", list(range(1000 * (i + 1), 1000 * (i + 1) + 1500)), 4, priority=1)
    longest = 0.0
    while s.has_work:
        plan = run(s, SMALL)
        if sum(len(c.tokens) for c in plan.prefill) > PROGRESS_TOKENS:
            longest = max(longest, SMALL.of(plan))
    assert 0 < longest <= BACKGROUND_STEP * beat * 1.02


def test_background_prompts_beside_a_stream_take_only_the_time_it_can_spare() -> None:
    s = taught()
    s.add_request("stream", list(range(10, 30)), 300)
    run(s, SMALL)
    alone = SMALL.of(run(s, SMALL))
    for i in range(2):
        s.add_request(f"b{i}", list(range(1000 * (i + 1), 1000 * (i + 1) + 1500)), 4, priority=1)
    read = 0
    for _ in range(200):
        plan = run(s, SMALL)
        assert "stream" in [d.request_id for d in plan.decode]
        background = [c for c in plan.prefill if c.request_id != "stream"]
        read += sum(len(c.tokens) for c in background)
        if sum(len(c.tokens) for c in background) > PROGRESS_TOKENS:
            decodes = Scheduler._shape([d for d in plan.decode if d.request_id == "stream"])
            assert SMALL.of(plan) <= STREAM_STEP * SMALL.seconds(decodes) * 1.02
        if "stream" not in s.running:
            break
    assert read > 200 * PROGRESS_TOKENS // 2  # the batch still advances
    assert alone > 0


def test_before_the_costs_are_learned_background_prompts_go_by_tokens() -> None:
    s = Scheduler(num_slots=4, slot_capacity=8192, max_batch_tokens=512)
    s.add_request("b", list(range(1000, 2500)), 4, priority=1)
    plan = s.schedule()
    assert [len(c.tokens) for c in plan.prefill] == [BACKGROUND_TOKENS_PER_STEP]


def test_steps_that_read_images_or_score_prompts_are_not_learned() -> None:
    s = Scheduler(num_slots=2, slot_capacity=4096, max_batch_tokens=512)
    s.add_request("scored", list(range(100, 400)), 2, score_prompt=True)
    plan = s.schedule()
    s.observe(plan, 5.0)
    s.add_request("image", [-3] * 10 + list(range(10)), 2)
    plan2 = s.schedule()
    s.observe(plan2, 5.0)
    assert not s.costs._prefill


class Believed(Model):
    """The scheduler's own cost model, as a Model (what it plans with)."""

    def __init__(self, s: Scheduler) -> None:
        coef = s.costs.coefficients()
        assert coef is not None
        super().__init__(*coef)


@settings(max_examples=25, deadline=None)
@given(
    fixed=st.floats(0.001, 0.05),
    decode=st.floats(0.0001, 0.01),
    prompt=st.floats(0.00005, 0.005),
    position=st.floats(0.0, 0.5),
    prompts=st.lists(st.tuples(st.integers(1, 2000), st.integers(0, 1)), min_size=1, max_size=4),
)
def test_streams_keep_their_pace_whatever_the_costs_and_prompts(
    fixed: float, decode: float, prompt: float, position: float, prompts: list[tuple[int, int]]
) -> None:
    """Planned against its own (learned) costs, every step beside a stream stays within
    STREAM_STEP of the streams' decode, give or take the one prompt token that always goes
    in, unless an interactive prompt's short rest went whole; and every prompt finishes."""
    model = Model(fixed, decode, prompt, position)
    s = taught(model)
    s.add_request("stream", list(range(10, 30)), 10_000)
    run(s, model)
    for i, (n, priority) in enumerate(prompts):
        s.add_request(f"p{i}", list(range(10_000 * (i + 1), 10_000 * (i + 1) + n)), 2, priority=priority)
    background = {f"p{i}" for i, (_, priority) in enumerate(prompts) if priority}
    lengths = {f"p{i}": n for i, (n, _) in enumerate(prompts)}
    for _ in range(20_000):
        believed = Believed(s)
        plan = s.schedule()
        s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, TOKEN)))
        if not plan.empty:
            s.observe(plan, model.of(plan))
        if not (set(s.running) - {"stream"}) and not s.waiting:
            break
        streams = [d for d in plan.decode if d.request_id not in background]
        if "stream" not in [d.request_id for d in streams] or not plan.prefill:
            continue
        if any(
            c.request_id not in background and short_tail(believed, c, lengths[c.request_id])
            for c in plan.prefill
        ):
            continue  # a short interactive prompt went whole
        one = max(
            believed.seconds(StepShape(prefill=1, attended=c.start + 1)) - believed.seconds(StepShape())
            for c in plan.prefill
        )
        limit = STREAM_STEP * believed.seconds(Scheduler._shape(streams))
        assert believed.of(plan) <= limit + one + 1e-9 or (
            len(plan.prefill) == 1 and len(plan.prefill[0].tokens) <= PROGRESS_TOKENS
        )
    else:
        pytest.fail("the prompts never finished")


def test_background_decodes_beside_a_stream_wait_unless_they_fit_and_never_starve() -> None:
    cpu = Model(0.002, 0.009, 0.0005, 0.01)  # a decode token costs nearly a whole step
    s = taught(cpu)
    for i in range(3):
        s.add_request(f"b{i}", list(range(1000 * (i + 1), 1000 * (i + 1) + 10)), 1000, priority=1)
    while any(not s.running[f"b{i}"].output for i in range(3) if f"b{i}" in s.running) or s.waiting:
        run(s, cpu)  # the batch is prefilled and decoding
    s.add_request("stream", list(range(10, 30)), 10_000)
    run(s, cpu)
    got = dict.fromkeys(("b0", "b1", "b2"), 0)
    slow = 0
    for _ in range(160):
        plan = run(s, cpu)
        ids = [d.request_id for d in plan.decode]
        assert "stream" in ids
        for rid in ids:
            if rid in got:
                got[rid] += 1
        alone = cpu.seconds(Scheduler._shape([d for d in plan.decode if d.request_id == "stream"]))
        slow += cpu.of(plan) > STREAM_STEP * alone * 1.02
    assert all(n >= 160 // BACKGROUND_PATIENCE for n in got.values()), got  # the batch advances
    assert slow <= 160 // BACKGROUND_PATIENCE + 1  # the stream's steps: one in 16 slower at most


def test_background_sequences_that_came_at_different_times_wait_for_one_patience_step() -> None:
    """Three batch sequences that joined beside a stream at different steps: what is due goes
    in together, so the stream sees one slower step in 16, not one per batch sequence."""
    cpu = Model(0.002, 0.009, 0.0005, 0.01)
    s = taught(cpu, slots=5)  # background work leaves the last free slot
    s.add_request("stream", list(range(10, 30)), 10_000)
    run(s, cpu)
    for i in range(3):
        s.add_request(f"b{i}", list(range(1000 * (i + 1), 1000 * (i + 1) + 10)), 1000, priority=1)
        for _ in range(5 + 3 * i):  # joined at different steps: their waits are out of step
            run(s, cpu)
    got = dict.fromkeys(("b0", "b1", "b2"), 0)
    slow = 0
    for _ in range(320):
        plan = run(s, cpu)
        ids = [d.request_id for d in plan.decode]
        assert "stream" in ids
        for rid in ids:
            if rid in got:
                got[rid] += 1
        alone = cpu.seconds(Scheduler._shape([d for d in plan.decode if d.request_id == "stream"]))
        slow += cpu.of(plan) > STREAM_STEP * alone * 1.02
    assert all(n >= 320 // (2 * BACKGROUND_PATIENCE) for n in got.values()), got  # none starves
    assert slow <= 320 // BACKGROUND_PATIENCE + 1, slow


def test_a_prompt_too_dear_for_a_streams_step_still_advances_every_few_steps() -> None:
    dear = Model(0.004, 0.008, 0.0035, 0.9)  # at position 3000 one prompt token costs > a decode
    s = taught(dear)
    s.add_request("stream", list(range(10, 30)), 10_000)
    run(s, dear)
    alone = dear.of(run(s, dear))
    s.add_request("long", [*range(1000, 4000), *range(7, 607)], 1)  # cached up to 3000 below
    slot = next(sl for sl in s.slots if sl.owner is None)
    slot.tokens = list(range(1000, 4000))
    read, slow = 0, 0
    for _ in range(16 * 8):
        plan = run(s, dear)
        assert "stream" in [d.request_id for d in plan.decode]
        read += sum(len(c.tokens) for c in plan.prefill if c.request_id == "long")
        slow += dear.of(plan) > STREAM_STEP * alone * 1.02
    assert read >= 8 - 1  # one token every BACKGROUND_PATIENCE steps at least
    assert slow <= 8 + 1  # and only those steps are slower for the stream


def test_a_scored_prompt_goes_in_the_same_pieces_whatever_the_costs() -> None:
    """Prompt scores depend on how the prompt is split: two servers must score alike."""
    pieces = []
    dear = Model(0.010, 0.001, 0.003, 0.04)  # 8 decodes' time reads ~30 prompt tokens
    for s in (Scheduler(num_slots=4, slot_capacity=8192, max_batch_tokens=512), taught(dear)):
        s.add_request("scored", list(range(100, 700)), 1, score_prompt=True)
        pieces.append([len(c.tokens) for c in s.schedule().prefill])
    assert pieces[0] == pieces[1] == [SCORED_TOKENS_PER_STEP]


def test_the_running_sums_forget_what_leaves_the_window() -> None:
    """The fit follows a change of machine speed once the old steps have left the window."""
    costs = StepCosts()
    slow, fast = Model(0.02, 0.002, 0.001, 0.08), SMALL
    for model in (slow, fast):
        for i in range(200):
            for shape in (
                StepShape(decode=1 + i % 4, attended=50 * i),
                StepShape(decode=i % 2, prefill=8 + i, attended=chunk_attended(i, 8 + i)),
            ):
                costs.observe(shape, model.seconds(shape))
    coef = costs.coefficients()
    assert coef is not None
    for got, want in zip(coef, fast.coef, strict=True):
        assert got == pytest.approx(want, rel=1e-3, abs=1e-6)


def test_observe_says_how_much_slower_a_step_was_than_predicted() -> None:
    s = taught()
    s.add_request("stream", list(range(10, 30)), 100)
    run(s, SMALL)
    plan = s.schedule()
    assert plan.decode
    s.update_from_output(plan, StepResult(tokens=dict.fromkeys(plan.sampled, TOKEN)))
    expected = SMALL.of(plan)
    assert s.observe(plan, 5 * expected) == pytest.approx(5, rel=0.05)  # held up: the governor looks
    fresh = Scheduler()
    fresh.add_request("a", [1, 2, 3], 2)
    first = fresh.schedule()
    assert fresh.observe(first, 1.0) is None  # nothing learned yet: no verdict


def test_beside_collected_answers_prompts_get_the_arrival_time_not_a_streams_pace() -> None:
    """A non-streamed answer's reader waits for all of it: its gaps need no even pace, so a
    long prompt reads ARRIVAL_STEP beats a step beside such answers, however many decode,
    where streams would leave it a third of their decode."""
    cpu = Model(0.002, 0.009, 0.0005, 0.01)  # a decode token costs nearly a whole step
    beat = cpu.seconds(StepShape(decode=1))
    prompt_time: dict[bool, float] = {}
    for paced in (True, False):
        s = taught(cpu, slots=8)
        for i in range(6):
            s.add_request(f"answer{i}", list(range(100 * i, 100 * i + 20)), 5000, paced=paced)
        for _ in range(3):
            run(s, cpu)
        s.add_request("long", list(range(1000, 5000)), 1)
        plan = run(s, cpu)
        assert len(plan.decode) == 6 and [c.request_id for c in plan.prefill] == ["long"]
        prompt_time[paced] = cpu.of(plan) - cpu.seconds(Scheduler._shape(plan.decode))
    assert prompt_time[False] >= 0.8 * ARRIVAL_STEP * beat  # not less for six decodes beside it
    assert prompt_time[False] >= 4 * prompt_time[True], prompt_time
