"""A pure, step-based scheduler: which sequences run in the next engine step.

No I/O, no threads, no llama_cpp: it is driven by EngineCore and tested with fabricated
step results.

Invariants:
- A request is in exactly one of ``waiting`` (FIFO) and ``running``, or in neither once
  finished; finished ids are forgotten.
- ``len(running) <= max_running``. A request admitted to ``running`` is prefilled in the
  step that admits it (prompt evaluated, first token sampled) and decodes one token in
  every later step until it finishes.
- ``num_generated <= max_tokens`` always; a request finishes with "length" exactly when
  it reaches ``max_tokens``, and with "stop" when its sampled token ends generation.
- ``len(waiting) <= max_waiting``; beyond that ``add_request`` raises ServerBusy.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from slmkit.engine.types import FinishReason
from slmkit.errors import ServerBusy


@dataclass
class SequenceState:
    request_id: str
    max_tokens: int  # generation stops with "length" after this many tokens
    num_generated: int = 0


@dataclass(frozen=True)
class StepPlan:
    """What the next step does."""

    prefill: tuple[str, ...] = ()  # evaluate the prompt, sample the first token
    decode: tuple[str, ...] = ()  # evaluate the last token, sample the next

    @property
    def empty(self) -> bool:
        return not self.prefill and not self.decode


@dataclass(frozen=True)
class StepResult:
    """What a backend did with a plan."""

    tokens: dict[str, int] = field(default_factory=dict)  # request id -> sampled token
    end_of_generation: frozenset[str] = frozenset()  # ids whose token ends generation


@dataclass(frozen=True)
class FinishedSequence:
    request_id: str
    reason: FinishReason
    num_generated: int


class Scheduler:
    def __init__(self, max_running: int = 1, max_waiting: int = 512) -> None:
        self.max_running = max_running
        self.max_waiting = max_waiting
        self.waiting: deque[SequenceState] = deque()
        self.running: dict[str, SequenceState] = {}

    def add_request(self, request_id: str, max_tokens: int) -> None:
        if len(self.waiting) >= self.max_waiting:
            raise ServerBusy("server busy, please try again: maximum pending requests exceeded")
        if request_id in self.running or any(s.request_id == request_id for s in self.waiting):
            raise ValueError(f"duplicate request id {request_id}")
        self.waiting.append(SequenceState(request_id, max(1, max_tokens)))

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> StepPlan:
        decode = tuple(self.running)
        prefill: list[str] = []
        while self.waiting and len(self.running) < self.max_running:
            seq = self.waiting.popleft()
            self.running[seq.request_id] = seq
            prefill.append(seq.request_id)
        return StepPlan(prefill=tuple(prefill), decode=decode)

    def update_from_output(self, plan: StepPlan, result: StepResult) -> list[FinishedSequence]:
        finished: list[FinishedSequence] = []
        for request_id in (*plan.prefill, *plan.decode):
            seq = self.running.get(request_id)
            if seq is None or request_id not in result.tokens:
                continue  # aborted while the step ran
            seq.num_generated += 1
            reason: FinishReason | None = None
            if request_id in result.end_of_generation:
                reason = "stop"
            elif seq.num_generated >= seq.max_tokens:
                reason = "length"
            if reason is not None:
                del self.running[request_id]
                finished.append(FinishedSequence(request_id, reason, seq.num_generated))
        return finished

    def finish_requests(
        self, request_ids: list[str] | tuple[str, ...], reason: FinishReason
    ) -> list[FinishedSequence]:
        """Remove requests wherever they are (stop string hit, client gone)."""
        ids = set(request_ids)
        out = []
        for request_id in list(self.running):
            if request_id in ids:
                seq = self.running.pop(request_id)
                out.append(FinishedSequence(request_id, reason, seq.num_generated))
        kept: deque[SequenceState] = deque()
        for seq in self.waiting:
            if seq.request_id in ids:
                out.append(FinishedSequence(seq.request_id, reason, 0))
            else:
                kept.append(seq)
        self.waiting = kept
        return out
