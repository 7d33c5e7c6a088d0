"""A pure, step-based scheduler for continuous batching over a fixed set of KV slots.

No I/O, no threads, no llama_cpp: EngineCore drives it, and tests drive it with fabricated
step results. Each step is one batch: one token for every decoding sequence, plus prompt
chunks of admitted sequences (chunked prefill) within ``max_batch_tokens``.

Slots are llama.cpp sequence ids. A slot remembers the tokens whose KV cells it holds, so a
new request can reuse the longest common prefix held by an idle slot (prompt caching).

Invariants:
- A request is in exactly one of ``waiting`` (FIFO) and ``running``, or in neither once
  finished; finished ids are forgotten.
- Every running request owns exactly one slot; a slot has at most one owner.
- Admission is FIFO within a priority, lower priorities first: a request is admitted only
  after every request of its priority (or a lower number) that arrived earlier, and only
  when a slot is free and the step has token budget left.
- Background requests (priority > 0: batch jobs) yield to interactive ones (priority 0):
  they never take the last free slot (with more than one slot), and while an interactive
  request waits or prefills (or waits while a slot is free for it), no background request
  is planned at all, so an interactive prompt's first token waits for at most one (short)
  background step.
- Preemption: an interactive request that would wait for a slot while background requests
  hold slots takes one: the background sequence holding the fewest tokens leaves its slot
  and goes back to the front of the queue with its prompt and output; readmitted, it
  prefills what its slot held (reusing what is still cached) without sampling and its
  answer continues, exactly as after ``rewind()``. A preempted request never fails for it.
- A shared KV pool (``pool_capacity`` > 0: fewer cells than slots x ``slot_capacity``): the
  tokens all slots hold never exceed it. Idle slots' cached prefixes are dropped first (least
  recently used first); when the running sequences' next tokens still do not fit, the
  background sequence, else the latest admitted one, is preempted (the same as for a slot:
  its cells are freed, it waits at the front of the queue and resumes by re-prefill, never
  failed); the first admitted sequence of the best priority is never preempted for memory,
  so work always advances. A waiting request is admitted only when the pool can hold its whole prompt and
  first token (an interactive one may preempt background sequences for it).
- Per step, tokens planned <= ``max_batch_tokens``; decoding sequences are planned first,
  so prefill never stalls running streams; partial prefills continue in admission order
  (after this step's interactive admissions).
- A scored prompt (``score_prompt``) is read in the same pieces whatever the step costs
  (``SCORED_TOKENS_PER_STEP``): its scores depend on how the prompt is split, and two
  servers of one model must score a text alike.
- Steps are planned by time once the costs are learned (``observe``, StepCosts): with
  interactive streams decoding (``paced``: answers read as they come; a collected answer's
  reader waits for all of it, so beside those a step reads prompts for ``ARRIVAL_STEP``
  one-token decodes whatever they cost), prompt tokens (anyone's) and background sequences' tokens go
  in only while the step is predicted within ``STREAM_STEP`` times the streams' decode alone
  (a background sequence that waited ``BACKGROUND_PATIENCE`` steps goes in anyway, on the
  one patience step in ``BACKGROUND_PATIENCE`` where all that are due go in together), except
  an interactive prompt that reads in ``SHORT_PROMPT`` one-token decodes or less, which goes
  whole; a step reading interactive prompts with no stream decoding within ``ARRIVAL_STEP``
  one-token decodes; a step of background work only within ``BACKGROUND_STEP``. A prompt
  the step has no time for gets ``PROGRESS_TOKENS`` after ``BACKGROUND_PATIENCE`` steps
  without any (every prompt advances). Waiting interactive requests are admitted before partial prefills
  continue (a chat turn's prompt before a long prompt's next piece). Before the costs are
  learned, background prompts read ``BACKGROUND_TOKENS_PER_STEP`` tokens per step.
- ``slot.tokens`` is exactly what the slot's KV cells hold once the plan has executed, and
  ``len(slot.tokens) <= slot_capacity`` always.
- Prefix sharing (``share_prefixes``): a request may start from a busy slot's prefix, as
  held before the step (what that slot writes this step is not copied), when it spares
  ``COPY_MIN`` tokens more than any free slot's cache: the plan copies it into a free slot
  (``StepPlan.copies``, after the trims, before the batch), never past the source's floor.
- A slot's cached prefix is reused only when at least its ``floor`` long (the backend's
  ``StepResult.floors``: a sliding-window cache keeps only the window, so a slot cut back
  before ``floor`` would resume without the window it needs); shorter, the slot is read
  again from 0.
- A request finishes with "length" when it reaches ``max_tokens`` or its slot is full, and
  with "stop" when its sampled token ends generation.
- Requests that cannot get a slot at once wait; at most ``max_waiting`` of them, beyond
  that ``add_request`` raises ServerBusy.
- After ``rewind()`` (the KV cache was lost) every running sequence prefills again what its
  slot held (prompt, then every sampled token but the last) without sampling; its output is
  kept, so the answer continues exactly where it was.
- While ``solo`` names a running request, steps plan that request only and admit nobody
  (EngineCore runs a suspect alone to find which request makes a step fail).
- Speculation (``draft_tokens`` > 0, requests added with ``speculate``): a decoding
  sequence may carry draft tokens from its own history (engine/speculative.py) after its
  last token; they count against the step's budget, never make the slot or ``max_tokens``
  overflow, and the draft tokens the backend rejects leave the slot's tokens (and its KV
  cells) in the same step. A sequence gains 1 + accepted tokens per step.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass, field

from slmkit.engine.plan import DecodeItem, FinishedSequence, PrefillChunk, StepPlan, StepResult, is_media
from slmkit.engine.speculative import PromptLookup
from slmkit.engine.stepcost import POSITION_UNIT, StepCosts, StepShape, chunk_attended
from slmkit.errors import ServerBusy
from slmkit.pipe import FinishReason

__all__ = [
    "DecodeItem",
    "FinishedSequence",
    "PrefillChunk",
    "Scheduler",
    "StepPlan",
    "StepResult",
    "is_media",
]

# Prompt tokens scored (SamplingParams.prompt_logprobs) per step: each also needs the output
# layer (n_embd x n_vocab) and a log-softmax, so a scored prompt goes in smaller pieces than
# n_batch. Measured (SmolLM2, 1 thread, a 1500-token prompt beside a stream): the stream's
# longest gap 2.3 s at 128 against 8.7 s unbounded (7.3 s for the same prompt unscored), and
# the scoring finishes sooner (22.9 s against 24.2 s).
SCORED_TOKENS_PER_STEP = 128

# Prompt tokens of background requests (batch jobs) per step: a step that is running when an
# interactive request arrives delays its first token, so background steps stay small.
# Measured (benchmarks/batch_jobs.py, 1 thread): interactive TTFT during a batch 1.42x of idle
# at the median with 32, 1.56-1.76x with 64; batch throughput unchanged.
BACKGROUND_TOKENS_PER_STEP = 32

# Steps planned by time (engine/stepcost.py learns what steps cost): while interactive streams
# decode, a step may take STREAM_STEP times their decode alone, so prompt chunks and background
# work (background prompt chunks and decodes alike: on a CPU each decode token costs nearly a
# whole step) never stretch a stream's gap between tokens beyond that; a step of background work only
# may take BACKGROUND_STEP one-token decodes (an interactive request arriving waits for it).
# Every step with a prompt to read reads at least PROGRESS_TOKENS of it.
STREAM_STEP = 1.3
BACKGROUND_STEP = 3.0
# With no stream decoding, a step reading interactive prompts stays within ARRIVAL_STEP
# one-token decodes: a request arriving meanwhile waits for at most that (a 512-token chunk
# takes ~1.8 s on 2 cores), and the prompt loses little (a prompt token costs nearly the same
# in a chunk of 30 as of 512 on a CPU).
ARRIVAL_STEP = 8.0
PROGRESS_TOKENS = 1
# An interactive prompt that reads in at most SHORT_PROMPT one-token decodes goes whole even
# beside streams: one longer gap for them per arrival (a few percent of their gaps) against a
# first token that would otherwise wait for dozens of steps. Measured on a 2-core CPU, where a
# prompt token costs a quarter of a decode step: a 35-token chat prompt is ~8 decodes.
SHORT_PROMPT = 10
# A background sequence's token joins a step beside streams only within STREAM_STEP, but after
# BACKGROUND_PATIENCE steps without one it goes in anyway, together with every other one that
# is due (one patience step in 16): one step in 16 at most is slower for the streams (under
# their p90; when each waiting sequence had its own turn, three batch lines made 3 in 16
# slower), and a batch always advances.
BACKGROUND_PATIENCE = 16

# A free slot is reused for its prefix only when the shared tokens are at least this share of
# what it holds (llama-server's --slot-prompt-similarity default): otherwise two conversations
# sharing only a chat template's header evicted each other from two slots, one of them empty
# (measured: 3 cached prompt tokens per turn instead of ~90%).
SLOT_SIMILARITY = 0.1
# A busy slot's prefix is copied into a free one (llama_memory_seq_cp) only when it spares at
# least COPY_MIN more prompt tokens than the free slots' own caches: a copy moves the source's
# cells (with a cache per slot, its whole buffer: ~5 ms for SmolLM2's 2048 cells), reading
# 64 tokens costs ~200 ms on 2 cores.
COPY_MIN = 64


@dataclass
class Slot:
    index: int  # llama.cpp sequence id
    tokens: list[int] = field(default_factory=list)  # tokens held in this slot's KV cells
    owner: str | None = None  # running request id
    last_used: int = 0  # step number of the last release (least recently used goes first)
    floor: int = 0  # a cached prefix shorter than this cannot be reused (StepResult.floors)


@dataclass
class SequenceState:
    request_id: str
    prompt: list[int]
    max_tokens: int  # generation stops with "length" after this many tokens
    slot: int = -1
    computed: int = 0  # prompt tokens whose KV cells are in the slot
    cached: int = 0  # of those, reused from the slot's previous contents
    output: list[int] = field(default_factory=list)  # sampled tokens
    replay: list[int] | None = None  # after rewind(): what the slot held, to prefill again
    lookup: PromptLookup | None = None  # the history's n-grams, when this request speculates
    drafted: int = 0  # draft tokens proposed for it
    accepted: int = 0  # of those, confirmed by the model
    score_prompt: bool = False  # every prompt position's logits are wanted: no cache reuse
    priority: int = 0  # 0 = interactive; larger = background (yields, see the invariants)
    preempted: int = 0  # times its slot went to an interactive request
    planned: int = 0  # the last step that decoded it
    admitted: int = 0  # the step it was last given a slot (the latest is preempted first for memory)
    paced: bool = True  # a stream: its gaps between tokens are kept even (else a collected answer)

    @property
    def inputs(self) -> list[int]:
        """The tokens to prefill: the prompt, or after a rewind what the slot held."""
        return self.prompt if self.replay is None else self.replay

    @property
    def prefilled(self) -> bool:
        return self.computed >= len(self.inputs)


def _run_end(tokens: list[int], start: int) -> int:
    """The end of the image run that starts at ``start``."""
    end = start
    while end < len(tokens) and tokens[end] == tokens[start]:
        end += 1
    return end


def _at(tokens: list[int], i: int) -> int | None:
    return tokens[i] if i < len(tokens) else None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Scheduler:
    def __init__(
        self,
        num_slots: int = 1,
        slot_capacity: int = 4096,
        max_batch_tokens: int = 512,
        max_waiting: int = 512,
        draft_tokens: int = 0,
        pool_capacity: int = 0,
        share_prefixes: bool = False,
    ) -> None:
        # a new request may copy a prefix from a busy slot (the backend's StepPlan.copies)
        self.share_prefixes = share_prefixes
        self.draft_tokens = max(0, draft_tokens)  # most draft tokens per sequence per step
        self.slots = [Slot(i) for i in range(max(1, num_slots))]
        # KV cells shared by all slots (0: each slot has its own slot_capacity cells)
        self.pool_capacity = pool_capacity if 0 < pool_capacity < num_slots * slot_capacity else 0
        self.slot_capacity = min(slot_capacity, self.pool_capacity or slot_capacity)
        self.preemptions = 0  # sequences that left their slot for another's (slot or memory)
        self.max_batch_tokens = max(1, max_batch_tokens)
        self.max_waiting = max_waiting
        self.waiting: deque[SequenceState] = deque()
        self.running: dict[str, SequenceState] = {}  # in admission order
        self.solo: str | None = None  # plan only this running request (see rewind)
        self.costs = StepCosts()  # what steps cost, learned from observe()
        self._step = 0
        self._due_step = -BACKGROUND_PATIENCE  # the last step work went in for patience (_due)
        self._held = [0] * len(self.slots)  # tokens each slot held when this step was planned

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add_request(
        self,
        request_id: str,
        prompt: list[int],
        max_tokens: int,
        speculate: bool = False,
        score_prompt: bool = False,
        priority: int = 0,
        paced: bool = True,
    ) -> None:
        free = sum(1 for slot in self.slots if slot.owner is None)
        if len(self.waiting) >= self.max_waiting + free:  # free slots take the first arrivals
            raise ServerBusy("server busy, please try again: maximum pending requests exceeded")
        if request_id in self.running or any(s.request_id == request_id for s in self.waiting):
            raise ValueError(f"duplicate request id {request_id}")
        if not prompt or len(prompt) > self.slot_capacity:
            raise ValueError("prompt must hold between 1 and slot_capacity tokens")
        seq = SequenceState(
            request_id,
            list(prompt),
            max(1, max_tokens),
            score_prompt=score_prompt,
            priority=max(0, priority),
            paced=paced,
        )
        if speculate and self.draft_tokens:
            seq.lookup = PromptLookup(seq.prompt)
        self.waiting.append(seq)

    def _pick_slot(self, prompt: list[int]) -> tuple[Slot, int, Slot | None]:
        """The free slot holding the longest prefix of ``prompt``, if that prefix is at least
        SLOT_SIMILARITY of what the slot holds (llama-server's --slot-prompt-similarity); else
        an empty slot, else the least recently used one. A few shared tokens (a chat
        template's header) must not evict another conversation while a slot is empty. Also
        how many of its tokens to keep: always at least one prompt token is evaluated, since
        sampling needs fresh logits. When ``share_prefixes`` and a busy slot holds a prefix
        longer by ``COPY_MIN`` tokens (a system prompt or document another request is using),
        that slot is the third value: its first ``keep`` tokens are copied into the chosen one."""
        free = [s for s in self.slots if s.owner is None]

        def reuse(slot: Slot) -> int:
            shared = common_prefix(slot.tokens, prompt)
            return shared if shared >= max(SLOT_SIMILARITY * len(slot.tokens), slot.floor) else 0

        best = max(free, key=lambda s: (reuse(s), not s.tokens, -s.last_used))
        keep = self._cut(prompt, best.tokens, best.floor)
        if not self.share_prefixes:
            return best, keep, None
        busy = [s for s in self.slots if s.owner is not None]
        # what a busy slot held before this step (its new tokens are written by this step's batch)
        held = {s.index: s.tokens[: self._held[s.index]] for s in busy}
        source = max(busy, key=lambda s: common_prefix(held[s.index], prompt), default=None)
        if source is None:
            return best, keep, None
        copied = self._cut(prompt, held[source.index], source.floor)
        if copied < keep + COPY_MIN:
            return best, keep, None
        target = max(free, key=lambda s: (not s.tokens, -s.last_used))  # an empty, else the LRU
        return target, copied, source

    @staticmethod
    def _cut(prompt: list[int], held: list[int], floor: int) -> int:
        """How much of ``held`` a request for ``prompt`` keeps: the common prefix, short of
        the prompt's last token, never inside an image's run, and 0 below ``floor``."""
        keep = min(common_prefix(held, prompt), len(prompt) - 1)
        while keep > 0 and is_media(prompt[keep - 1]) and prompt[keep - 1] in (prompt[keep], _at(held, keep)):
            keep -= 1  # not into an image's run (in either): an image is encoded whole or not at all
        return 0 if keep < floor else keep  # below the floor the window before the cut is gone

    def schedule(self) -> StepPlan:
        self._step += 1
        budget = self.max_batch_tokens
        decode: list[DecodeItem] = []
        trims: list[tuple[int, int]] = []
        copies: list[tuple[int, int, int]] = []
        self._held = [len(slot.tokens) for slot in self.slots]
        if self.solo is None:
            self._preempt()
        running = [s for s in self.running.values() if self.solo in (None, s.request_id)]
        if self._interactive_pending():  # background work waits until they have their first token
            running = [s for s in running if not s.priority]
        spare = budget  # cells for draft tokens
        if self.pool_capacity:
            self._fit_pool(running, trims)
            running = [s for s in running if s.request_id in self.running]
            spare = self._free_cells() - sum(1 for s in running if s.prefilled)
        for seq in sorted(running, key=lambda s: s.priority):  # streams first, then background
            if seq.prefilled and budget > 0:
                slot = self.slots[seq.slot]
                draft = tuple(self._draft(seq, slot, max(0, min(budget - 1, spare))))
                spare -= len(draft)
                item = DecodeItem(seq.request_id, slot.index, seq.output[-1], len(slot.tokens), draft)
                if seq.priority and not self._fits(decode, item, seq):
                    continue  # a background token would slow the streams: it waits a step
                decode.append(item)
                seq.planned = self._step
                slot.tokens.append(seq.output[-1])
                slot.tokens.extend(draft)
                budget -= 1 + len(draft)
        time_left = self._time_left(decode)
        prefill: list[PrefillChunk] = []
        # interactive newcomers first: a chat turn's prompt before a long prompt's next piece
        budget, time_left = self._admit(prefill, trims, copies, budget, time_left, interactive=True)
        for seq in running:
            if not seq.prefilled and budget > 0:
                room = self._room(seq, budget, time_left, first=not prefill)
                if self.pool_capacity:
                    room = min(room, self._free_cells())
                if room <= 0:
                    continue
                prefill.append(self._chunk(seq, room))
                budget -= len(prefill[-1].tokens)
                time_left = self._spend(time_left, prefill[-1])
        budget, time_left = self._admit(prefill, trims, copies, budget, time_left, interactive=False)
        return StepPlan(
            trims=tuple(trims), copies=tuple(copies), prefill=tuple(prefill), decode=tuple(decode)
        )

    def _admit(
        self,
        prefill: list[PrefillChunk],
        trims: list[tuple[int, int]],
        copies: list[tuple[int, int, int]],
        budget: int,
        time_left: float | None,
        interactive: bool,
    ) -> tuple[int, float | None]:
        """Admit waiting requests (only interactive ones when ``interactive``) while a slot,
        tokens and time are left; each gets a slot and its first prompt chunk."""
        while self.solo is None and budget > 0 and (admitted := self._next_admission()) is not None:
            seq = admitted
            if interactive and seq.priority:
                break
            if self._room(seq, budget, time_left, first=not prefill) <= 0:
                break  # the step's time is spent: it is admitted next step
            slot, keep, source = self._pick_slot(seq.inputs)
            if seq.score_prompt:
                keep, source = 0, None  # cached positions would have no logits to score
            if self.pool_capacity and not self._pool_admits(seq, slot, keep, trims, source):
                break  # the pool cannot hold its prompt yet: it waits for cells
            self.waiting.remove(seq)
            slot.owner = seq.request_id
            if source is not None:  # another slot's prefix, copied in before the batch
                copies.append((source.index, slot.index, keep))
                slot.tokens, slot.floor = source.tokens[:keep], source.floor
            elif keep < len(slot.tokens):
                trims.append((slot.index, keep))
                del slot.tokens[keep:]
            if keep == 0:
                slot.floor = 0
            seq.slot, seq.computed, seq.admitted = slot.index, keep, self._step
            if seq.replay is None:
                seq.cached = keep
            self.running[seq.request_id] = seq
            prefill.append(self._chunk(seq, max(1, self._room(seq, budget, time_left, first=not prefill))))
            budget -= len(prefill[-1].tokens)
            time_left = self._spend(time_left, prefill[-1])
        return budget, time_left

    def observe(self, plan: StepPlan, seconds: float) -> float | None:
        """A step's measured seconds (time comes in as data): the cost model learns from it.
        Steps that read an image or score prompt tokens cost otherwise and are not learned.
        Returns the seconds over what the costs learned so far predicted (None when they
        cannot say): a step several times slower than its prediction was held up."""
        if any(c.targets or any(is_media(t) for t in c.tokens) for c in plan.prefill):
            return None
        shape = self._shape(plan.decode, plan.prefill)
        predicted = self.costs.predict(shape)
        self.costs.observe(shape, seconds)
        return seconds / predicted if predicted else None

    @staticmethod
    def _shape(
        decode: list[DecodeItem] | tuple[DecodeItem, ...], prefill: tuple[PrefillChunk, ...] = ()
    ) -> StepShape:
        tokens = sum(1 + len(d.draft) for d in decode)
        attended = sum(chunk_attended(d.position, 1 + len(d.draft)) for d in decode)
        return StepShape(
            decode=tokens,
            prefill=sum(len(c.tokens) for c in prefill),
            attended=attended + sum(chunk_attended(c.start, len(c.tokens)) for c in prefill),
        )

    def _fits(self, decode: list[DecodeItem], item: DecodeItem, seq: SequenceState) -> bool:
        """Whether a background sequence's token may join a step beside interactive streams:
        while the step stays within ``STREAM_STEP`` times the streams' decode alone, or when
        it has waited ``BACKGROUND_PATIENCE`` steps (batch work never starves)."""
        streams = self._streams(decode)
        if not streams:
            return True
        alone, whole = (
            self.costs.predict(self._shape(streams)),
            self.costs.predict(self._shape([*decode, item])),
        )
        return alone is None or whole is None or whole <= STREAM_STEP * alone or self._due(seq)

    def _streams(self, decode: list[DecodeItem]) -> list[DecodeItem]:
        """The interactive streams among a step's decodes: their pace is kept."""
        return [d for d in decode if not (seq := self.running[d.request_id]).priority and seq.paced]

    def _due(self, seq: SequenceState) -> bool:
        """Whether ``seq``'s work goes in though the step has no time for it: it waited
        ``BACKGROUND_PATIENCE`` steps, and this is the patience step (at most one in
        ``BACKGROUND_PATIENCE``: whatever is due then goes in together, so the streams see one
        slower step in 16, not one per waiting sequence; a due sequence waits at most that long
        again)."""
        if self._step - seq.planned < BACKGROUND_PATIENCE:
            return False
        if self._due_step != self._step and self._step - self._due_step < BACKGROUND_PATIENCE:
            return False
        self._due_step = self._step
        return True

    def _time_left(self, decode: list[DecodeItem]) -> float | None:
        """Seconds this step may still spend on prompt tokens, or None when only tokens bound
        it (the costs are not learned yet). With interactive streams decoding, the step may
        take ``STREAM_STEP`` times their decode alone; reading interactive prompts only,
        ``ARRIVAL_STEP`` one-token decodes; with background work only, ``BACKGROUND_STEP``
        (a request arriving waits for the step)."""
        streams = self._streams(decode)
        whole = self.costs.predict(self._shape(decode))
        if whole is None:
            return None
        if streams:
            alone = self.costs.predict(self._shape(streams)) or 0.0
            return STREAM_STEP * alone - whole
        beat = self.costs.predict(StepShape(decode=1)) or 0.0
        if any(not self.running[d.request_id].priority for d in decode):
            # collected answers only: prompts get ARRIVAL_STEP beats beside their decodes (their
            # readers wait for whole answers, and an arrival for at most that much more)
            return ARRIVAL_STEP * beat
        if self._interactive_pending():  # interactive prompts only (background work waits for them)
            return ARRIVAL_STEP * beat - whole
        return BACKGROUND_STEP * beat - whole

    def _room(self, seq: SequenceState, budget: int, time_left: float | None, first: bool) -> int:
        """Prompt tokens ``seq`` may read this step: within the token budget and the time
        left (``PROGRESS_TOKENS`` for the step's first chunk when it has waited
        ``BACKGROUND_PATIENCE`` steps, so a prompt always advances); before the costs are
        learned, background prompts go by tokens."""
        if time_left is None or seq.score_prompt:  # scored prompts: the same pieces always
            return (
                min(budget, BACKGROUND_TOKENS_PER_STEP) if seq.priority and not self.costs.ready else budget
            )
        rest = len(seq.inputs) - seq.computed
        if not seq.priority and self._short(seq.computed, rest):
            return min(budget, rest)  # a short interactive prompt goes whole: its first token first
        fits = self.costs.prompt_tokens_within(time_left, seq.computed) or 0
        # A prompt the step has no time for still advances every few steps: at a long
        # position one prompt token can cost more than a whole decode step on a CPU.
        if fits <= 0 and first and self._due(seq):
            return min(budget, PROGRESS_TOKENS)
        return min(budget, max(fits, 0))

    def _short(self, start: int, tokens: int) -> bool:
        """Whether reading ``tokens`` prompt tokens from ``start`` takes at most
        ``SHORT_PROMPT`` one-token decodes."""
        coef = self.costs.coefficients()
        if coef is None:
            return False
        rest = coef[2] * tokens + coef[3] * chunk_attended(start, tokens) / POSITION_UNIT
        return rest <= SHORT_PROMPT * (coef[0] + coef[1])  # a one-token decode: fixed + one token

    def _spend(self, time_left: float | None, chunk: PrefillChunk) -> float | None:
        if time_left is None:
            return None
        coef = self.costs.coefficients()
        assert coef is not None  # time_left is only set once the costs are learned
        shape = StepShape(prefill=len(chunk.tokens), attended=chunk_attended(chunk.start, len(chunk.tokens)))
        return time_left - (coef[2] * shape.prefill + coef[3] * shape.attended / POSITION_UNIT)

    def _free_cells(self) -> int:
        return self.pool_capacity - sum(len(slot.tokens) for slot in self.slots)

    def _fit_pool(self, running: list[SequenceState], trims: list[tuple[int, int]]) -> None:
        """Make room in the shared pool for this step's decode tokens (one per decoding
        sequence; one prompt token when nothing decodes): idle slots' caches go first, then
        running sequences are preempted, background before interactive, the latest admitted
        first; the first admitted of the best priority is kept, so work always advances."""
        need = sum(1 for s in running if s.prefilled) or (1 if running else 0)
        self._drop_idle(need, trims)
        while self._free_cells() < need:
            keep = min(
                self.running.values(), key=lambda s: s.priority
            )  # the first admitted of the best priority
            victims = [s for s in self.running.values() if s is not keep and s.request_id != self.solo]
            if not victims:
                return
            victim = max(reversed(victims), key=lambda s: (s.priority, s.admitted))  # ties: the later
            if victim.prefilled and victim in running:
                need -= 1
            self._evict(victim, trims)

    def _drop_idle(self, need: int, trims: list[tuple[int, int]], spare: Slot | None = None) -> None:
        """Free idle slots' cached prefixes, least recently used first, until ``need`` cells
        are free (``spare`` is kept: a request is about to reuse it)."""
        idle = sorted(
            (s for s in self.slots if s.owner is None and s.tokens and s is not spare),
            key=lambda s: s.last_used,
        )
        for slot in idle:
            if self._free_cells() >= need:
                return
            trims.append((slot.index, 0))
            slot.tokens.clear()
            slot.floor = 0

    def _pool_admits(
        self, seq: SequenceState, slot: Slot, keep: int, trims: list[tuple[int, int]], source: Slot | None
    ) -> bool:
        """Whether the pool can hold ``seq``'s whole input and first token in ``slot`` (which
        keeps ``keep`` cached tokens, its own or copied from ``source``), freeing idle caches
        and, for an interactive request, preempting background sequences (never the source:
        the copy reads its cells); nothing is freed when even that would not do."""
        lender = source.index if source is not None else -1
        background = (  # may give their cells: not in this step's plan already, not the lender
            [s for s in self.running.values() if s.priority and s.planned != self._step and s.slot != lender]
            if not seq.priority
            else []
        )
        need = len(seq.inputs) - keep + 1 - (len(slot.tokens) - keep)  # cut back, the slot frees cells
        need += sum(  # prompts being read (not a possible victim's: it would stop reading)
            len(s.inputs) - s.computed for s in self.running.values() if s not in background
        )
        idle = sum(len(s.tokens) for s in self.slots if s.owner is None and s is not slot)
        if self._free_cells() + idle + sum(len(self.slots[s.slot].tokens) for s in background) < need:
            return False
        self._drop_idle(need, trims, spare=slot)
        for victim in sorted(background, key=lambda s: -s.admitted):
            if self._free_cells() >= need:
                break
            self._evict(victim, trims)
        return True

    def _evict(self, seq: SequenceState, trims: list[tuple[int, int]] | None = None) -> None:
        """Preempt a running sequence: it leaves its slot (its cells freed when ``trims`` is
        given) and waits at the front of the queue, to resume by re-prefill."""
        del self.running[seq.request_id]
        slot = self.slots[seq.slot]
        slot.owner, slot.last_used = None, self._step
        if trims is not None:
            trims.append((slot.index, 0))
            slot.tokens.clear()
            slot.floor = 0
        seq.slot, seq.computed = -1, 0
        seq.replay = seq.prompt + seq.output[:-1] if seq.output else None
        seq.preempted += 1
        self.preemptions += 1
        self.waiting.appendleft(seq)

    def _preempt(self) -> None:
        """Interactive requests waiting with no free slot take background ones' slots: the
        background sequence holding the fewest tokens (the least to read again) goes back to
        the front of the queue, keeping its prompt and output; readmitted, it prefills what
        its slot held (the part still cached is reused) and its answer continues."""
        wanting = sum(1 for s in self.waiting if not s.priority)
        free = sum(1 for slot in self.slots if slot.owner is None)
        if wanting <= free:
            return
        victims = sorted(
            (s for s in self.running.values() if s.priority), key=lambda s: len(self.slots[s.slot].tokens)
        )
        for seq in victims[: wanting - free]:
            self._evict(seq)

    def _interactive_pending(self) -> bool:
        """Whether an interactive request is prefilling, or waits while a slot is free for
        it. (Waiting while interactive requests hold every slot, it pauses nobody: background
        slots were preempted for it already.)"""
        if any(not s.priority and not s.prefilled for s in self.running.values()):
            return True
        free = any(slot.owner is None for slot in self.slots)
        return free and any(not s.priority for s in self.waiting)

    def _next_admission(self) -> SequenceState | None:
        """The first waiting request of the lowest priority number, if a slot is free for it
        (a background request leaves the last free slot to interactive ones)."""
        if not self.waiting:
            return None
        seq = min(self.waiting, key=lambda s: s.priority)  # the first of the lowest: FIFO within
        free = sum(1 for s in self.slots if s.owner is None)
        reserve = 1 if seq.priority and len(self.slots) > 1 else 0
        return seq if free > reserve else None

    def _draft(self, seq: SequenceState, slot: Slot, budget: int) -> list[int]:
        """Draft tokens for a decoding sequence: within the budget, the slot (its token and
        the drafts go in now) and ``max_tokens`` (each accepted draft is an output token)."""
        if seq.lookup is None or self.solo is not None:
            return []
        room = min(
            self.draft_tokens,
            budget,
            self.slot_capacity - len(slot.tokens) - 1,
            seq.max_tokens - len(seq.output) - 1,
        )
        draft = seq.lookup.draft(room)
        cut = next((i for i, t in enumerate(draft) if is_media(t)), len(draft))
        return draft[:cut]  # an image's placeholder is never a token to guess

    def _chunk(self, seq: SequenceState, budget: int) -> PrefillChunk:
        slot = self.slots[seq.slot]
        if seq.score_prompt:  # every scored token costs the output layer: a few per step
            budget = min(budget, SCORED_TOKENS_PER_STEP)
        tokens = self._span(seq.inputs, seq.computed, budget)
        targets = (
            tuple(seq.prompt[seq.computed + 1 : seq.computed + len(tokens) + 1]) if seq.score_prompt else ()
        )
        chunk = PrefillChunk(seq.request_id, slot.index, seq.computed, tuple(tokens), False, targets)
        seq.computed += len(tokens)
        seq.planned = self._step
        slot.tokens.extend(tokens)
        if seq.prefilled and not seq.output:  # a replay ends without sampling: its token is known
            chunk = dataclasses.replace(chunk, sample=True)
        return chunk

    @staticmethod
    def _span(inputs: list[int], start: int, budget: int) -> list[int]:
        """The next prefill chunk's tokens: up to ``budget``, but an image run only whole and
        only first (over the budget if need be), and text only up to the next image."""
        end = min(len(inputs), start + budget)
        text = start
        if is_media(inputs[start]):
            text = _run_end(inputs, start)
            end = max(end, text)
        cut = next((i for i in range(text, end) if is_media(inputs[i])), end)
        return inputs[start:cut]

    def update_from_output(self, plan: StepPlan, result: StepResult) -> list[FinishedSequence]:
        finished: list[FinishedSequence] = []
        for index, floor in result.floors.items():
            self.slots[index].floor = floor
        drafts = {d.request_id: d.draft for d in plan.decode if d.draft}
        for request_id in plan.sampled:
            seq = self.running.get(request_id)
            if seq is None or request_id not in result.tokens:
                continue  # aborted while the step ran
            new = [*result.accepted.get(request_id, ()), result.tokens[request_id]]
            if request_id in drafts:
                draft, kept = drafts[request_id], len(new) - 1
                if kept < len(draft):  # the backend dropped the rejected drafts' KV cells
                    del self.slots[seq.slot].tokens[kept - len(draft) :]
                seq.drafted += len(draft)
                seq.accepted += kept
                if seq.lookup is not None:
                    seq.lookup.feedback(len(draft), kept, self.draft_tokens)
            seq.output.extend(new)
            if seq.lookup is not None:
                seq.lookup.extend(new)
            reason: FinishReason | None = None
            if request_id in result.end_of_generation:
                reason = "stop"
            elif len(seq.output) >= seq.max_tokens or len(self.slots[seq.slot].tokens) >= self.slot_capacity:
                reason = "length"
            if reason is not None:
                finished.append(self._release(seq, reason))
        return finished

    def finish_requests(
        self, request_ids: list[str] | tuple[str, ...], reason: FinishReason
    ) -> list[FinishedSequence]:
        """Remove requests wherever they are (stop string hit, client gone)."""
        ids = set(request_ids)
        out = [self._release(self.running[r], reason) for r in list(self.running) if r in ids]
        kept: deque[SequenceState] = deque()
        for seq in self.waiting:
            if seq.request_id in ids:  # a preempted one has an answer so far
                out.append(
                    FinishedSequence(
                        seq.request_id, reason, len(seq.output), seq.cached, seq.drafted, seq.accepted
                    )
                )
            else:
                kept.append(seq)
        self.waiting = kept
        return out

    def _release(self, seq: SequenceState, reason: FinishReason) -> FinishedSequence:
        del self.running[seq.request_id]
        slot = self.slots[seq.slot]
        slot.owner = None
        slot.last_used = self._step
        return FinishedSequence(
            seq.request_id, reason, len(seq.output), seq.cached, seq.drafted, seq.accepted
        )

    def rewind(self) -> None:
        """The KV cache was lost (a failed step): slots forget their tokens and every running
        sequence prefills again what it held, keeping its output."""
        for slot in self.slots:
            slot.tokens.clear()
            slot.floor = 0
        for seq in self.running.values():
            seq.computed = 0
            seq.replay = seq.prompt + seq.output[:-1] if seq.output else None
