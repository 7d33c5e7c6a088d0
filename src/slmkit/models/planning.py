"""What loading a model will do, said before it is done: the load plan.

The manager's loader and ``POST /api/plan`` (``slm fit --server``) use the same two
functions, so what the plan says and what the load does cannot disagree: the manager's
``plan`` (spec and memory estimate) and :func:`evictions` below (which idle models make
room, least recently used first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slmkit.models.memory import Estimate
from slmkit.pipe import LoadSpec


@dataclass(frozen=True)
class Resident:
    """A loaded model as the memory budget sees it."""

    name: str
    memory: int  # bytes counted against the budget
    busy: bool  # requests in flight: not evictable now
    last_used: float


def evictions(loaded: Sequence[Resident], need: int, budget: int, max_loaded: int) -> tuple[list[str], bool]:
    """The idle models to unload, least recently used first, so that ``need`` more bytes and
    one more model fit; and whether that is enough (if not, the load waits for busy models
    to go idle, until its deadline)."""
    used = sum(m.memory for m in loaded)
    count = len(loaded)
    victims = []
    for m in sorted((m for m in loaded if not m.busy), key=lambda m: m.last_used):
        if used + need <= budget and count < max_loaded:
            break
        victims.append(m.name)
        used -= m.memory
        count -= 1
    return victims, used + need <= budget and count < max_loaded


@dataclass(frozen=True)
class LoadPlan:
    model: str
    format: str
    spec: LoadSpec | None  # None: an upstream model (nothing loads here)
    estimate: Estimate
    projector: int  # bytes of a vision projector (in the estimate's weights)
    threads: int  # what the worker starts with (automatic: the CPU budget, then adapted)
    budget: int  # SLM_MAX_MEMORY, else the memory available at start less headroom
    used: int  # by the models loaded now (this one's old version excluded)
    evicts: list[str]
    room: bool  # after those evictions it fits now (else it waits for busy models)
    loaded: bool  # already loaded, this version: nothing to do
    what_if: bool  # settings came from the request, not the model and the server
    speed: dict[str, Any] | None = None  # the model card's measured decode speed, if any

    @property
    def fits(self) -> bool:
        """Whether it fits the budget at all (alone)."""
        return self.estimate.required <= self.budget

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "model": self.model,
            "format": self.format,
            "backend": spec.backend if spec else "upstream",
            "loaded": self.loaded,
            "what_if": self.what_if,
            "context": self.estimate.n_ctx,
            "parallel": self.estimate.n_parallel,
            "kv_cache_type": spec.kv_cache_type if spec else None,
            "kv_unified": spec.kv_unified if spec else None,
            "kv_pool": spec.kv_pool if spec else None,  # shared cells (SLM_KV_POOL; 0 = slots x context)
            "flash_attention": spec.flash_attention if spec else None,
            "threads": self.threads,
            "threads_automatic": bool(spec) and spec.n_threads == 0,  # type: ignore[union-attr]
            "bytes": {**self.estimate.parts(), "projector": self.projector},
            "budget": {"bytes": self.budget, "used": self.used, "free": max(0, self.budget - self.used)},
            "fits": self.fits,
            "evicts": self.evicts,
            "room_now": self.room,
            # one sequence's tokens/s as `slm eval` measured this build on this machine
            "expected_tokens_per_second": (self.speed or {}).get("decode_tok_s"),
            "expected_from": (self.speed or {}).get("measured_at"),
        }
