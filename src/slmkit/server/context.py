"""Per-request facts gathered along the way, for the access log, metrics and rate limits.

The outermost middleware creates a RequestContext and puts it in a context variable; the
guard adds the key, the generation path adds the model, token counts and timings. Nothing
here ever holds prompt text or a key's secret.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from slmkit.security.keys import ApiKey


@dataclass
class RequestContext:
    request_id: str
    method: str
    path: str
    started: float = field(default_factory=time.perf_counter)
    key: ApiKey | None = None  # the caller's key, when keys are in use
    model: str | None = None  # display name of the model that answered
    status: int = 0
    rejection: str | None = None  # why the front door refused it (metrics label)
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    draft_tokens: int = 0  # speculative decoding's guesses (SLM_DRAFT_TOKENS)
    accepted_tokens: int = 0  # of those, confirmed by the model
    ttft: float | None = None  # seconds from receipt to the first token
    queue_seconds: float | None = None  # waiting for a slot in the worker
    token_gaps: list[float] = field(default_factory=list)  # seconds between tokens
    facts: dict[str, Any] | None = None  # what the answer did (answer/generation.facts): X-Slm-* headers


current: ContextVar[RequestContext | None] = ContextVar("slm_request", default=None)


def owner() -> str:
    """Whose stored things (responses, files, batch jobs) the current request may see: its
    API key's id, "" when keys are off."""
    ctx = current.get()
    return ctx.key.id if ctx is not None and ctx.key is not None else ""
