"""What a step does and what came of it: the vocabulary between the scheduler (which plans
steps, engine/scheduler.py) and the backends (which run them, engine/backends/). Plain frozen
data, no behaviour beyond counting."""

from __future__ import annotations

from dataclasses import dataclass, field

from slmkit.pipe import FinishReason


@dataclass(frozen=True)
class PrefillChunk:
    request_id: str
    slot: int
    start: int  # position of tokens[0] in the sequence
    tokens: tuple[int, ...]
    sample: bool  # the chunk ends the prompt: sample the first token from its last logits
    # prompt scoring: the prompt tokens at positions start + 1, start + 2, ...: the i-th is
    # scored under the logits of tokens[i] (the prompt's own continuation, not a sample)
    targets: tuple[int, ...] = ()


@dataclass(frozen=True)
class DecodeItem:
    request_id: str
    slot: int
    token: int  # the last sampled token, fed back in
    position: int
    draft: tuple[int, ...] = ()  # guessed tokens after it, at position + 1, + 2, ... (checked)


@dataclass(frozen=True)
class StepPlan:
    """What the next step does, in order: trim slots, copy prefixes, then one batch."""

    trims: tuple[tuple[int, int], ...] = ()  # (slot, keep): drop KV cells from ``keep`` on
    # (source, target, keep): the target slot's cells become the source's first ``keep``
    copies: tuple[tuple[int, int, int], ...] = ()
    prefill: tuple[PrefillChunk, ...] = ()
    decode: tuple[DecodeItem, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.prefill and not self.decode

    @property
    def num_tokens(self) -> int:
        return sum(1 + len(d.draft) for d in self.decode) + sum(len(c.tokens) for c in self.prefill)

    @property
    def sampled(self) -> tuple[str, ...]:
        """Requests that get a token from this step."""
        return (*(c.request_id for c in self.prefill if c.sample), *(d.request_id for d in self.decode))


@dataclass(frozen=True)
class StepResult:
    """What a backend did with a plan."""

    tokens: dict[str, int] = field(default_factory=dict)  # request id -> sampled token
    # request id -> the leading draft tokens the model confirmed; they come before its token
    accepted: dict[str, tuple[int, ...]] = field(default_factory=dict)
    end_of_generation: frozenset[str] = frozenset()  # ids whose token ends generation
    # request id -> (log probability of its token, the likeliest (token, logprob) pairs)
    logprobs: dict[str, tuple[float, tuple[tuple[int, float], ...]]] = field(default_factory=dict)
    # request id -> (position, token, logprob, likeliest pairs) for each scored prompt token
    prompt_logprobs: dict[str, tuple[tuple[int, int, float, tuple[tuple[int, float], ...]], ...]] = field(
        default_factory=dict
    )
    # slot -> the shortest prefix its cells can be cut back to and resumed from (sliding-window
    # caches keep only the window: positions before it are gone); slots not named keep theirs
    floors: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class FinishedSequence:
    request_id: str
    reason: FinishReason
    num_generated: int
    cached: int  # prompt tokens reused from a slot's cache
    drafted: int = 0  # draft tokens proposed (speculation)
    accepted: int = 0  # of those, confirmed by the model


def is_media(token: int) -> bool:
    """An image placeholder (engine/backends/media.py): an image's tokens stand as a run of
    one negative id. A run is never split: a prefill chunk starts at each run and takes it
    whole, and a slot's cached prefix is never kept up to the middle of one."""
    return token < 0
