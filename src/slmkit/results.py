"""Result types returned by both Python APIs (slmkit.Client and slmkit.load)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Completion:
    """A finished generation."""

    text: str
    finish_reason: str  # "stop" or "length"
    model: str
    prompt_tokens: int
    completion_tokens: int
    prompt_eval_seconds: float  # prompt processing time
    eval_seconds: float  # generation time after the first token
    load_seconds: float = 0.0
    total_seconds: float = 0.0
    thinking: str = ""  # the reasoning block, for models that think
    tool_calls: tuple[dict[str, Any], ...] = ()  # {"name", "arguments"} when the answer was calls

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.eval_seconds if self.eval_seconds > 0 else 0.0


@dataclass(frozen=True)
class Chunk:
    """One streamed piece: new text, and on the last chunk the whole Completion."""

    text: str
    done: Completion | None = None
    thinking: str = ""  # new reasoning text, for models that think
