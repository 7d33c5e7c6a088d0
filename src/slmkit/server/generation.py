"""The one internal request path that every API dialect goes through.

An adapter turns its wire request into an EngineRequest, calls :func:`stream` (or
:func:`complete`), and turns the Delta/Done items back into its wire format.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from slmkit.config import Config
from slmkit.defaults import with_model_context
from slmkit.engine.manager import ModelManager
from slmkit.engine.types import (
    EngineRequest,
    Event,
    Failed,
    Finished,
    FinishReason,
    GenerationStats,
    TextDelta,
    TokenLogprob,
)
from slmkit.errors import DeadlineExceeded, LimitExceeded
from slmkit.server import context

log = logging.getLogger("slmkit.server")


@dataclass(frozen=True)
class Delta:
    text: str  # new text (empty only when it carries logprobs of held-back tokens)
    logprobs: tuple[TokenLogprob, ...] = ()  # one per generated token, when asked for


@dataclass(frozen=True)
class Done:
    model: str  # display name of the model that answered
    finish_reason: FinishReason
    stats: GenerationStats
    load_seconds: float  # time spent loading the model for this request
    total_seconds: float  # from receipt to the last token
    logprobs: tuple[TokenLogprob, ...] = ()  # every token's, for non-streamed answers (complete())


def new_request_id() -> str:
    return uuid.uuid4().hex


async def stream(
    manager: ModelManager, model: str, request: EngineRequest, keep_alive: float | None
) -> AsyncIterator[Delta | Done]:
    """Run one generation, yielding text deltas then one Done; raises SlmError on failure.

    Closing the iterator early (client gone) aborts the request in the worker.
    """
    request = apply_limits(request, manager.config)
    started = time.perf_counter()
    limit = manager.config.request_timeout
    deadline = started + limit if limit > 0 else None
    ctx = context.current.get()
    if manager.config.log_prompts:
        log.info("request %s prompt: %r", ctx.request_id if ctx else "-", request.messages or request.prompt)
    async with manager.use(model, keep_alive) as (loaded, load_seconds):
        request = with_model_context(request, loaded.record)
        if ctx is not None:
            ctx.model = loaded.name
        events = loaded.worker.generate(request)
        last = started
        try:
            while True:
                event = await _next(events, deadline, limit)
                if isinstance(event, TextDelta):
                    now = time.perf_counter()
                    if ctx is not None and event.tokens:
                        if ctx.ttft is None:
                            ctx.ttft = now - started
                        else:  # a merged delta spreads its gap over its tokens
                            ctx.token_gaps.extend([(now - last) / event.tokens] * event.tokens)
                    last = now
                    if event.text or event.logprobs:
                        yield Delta(event.text, event.logprobs)
                elif isinstance(event, Finished):
                    if ctx is not None:
                        stats = event.stats
                        ctx.prompt_tokens += stats.prompt_tokens
                        ctx.cached_tokens += stats.cached_tokens
                        ctx.completion_tokens += stats.completion_tokens
                        ctx.queue_seconds = stats.queue_seconds
                    yield Done(
                        model=loaded.name,
                        finish_reason=event.reason,
                        stats=event.stats,
                        load_seconds=load_seconds,
                        total_seconds=time.perf_counter() - started,
                    )
                    return
                elif isinstance(event, Failed):
                    raise event.error
        finally:
            await events.aclose()  # type: ignore[attr-defined]


def apply_limits(request: EngineRequest, config: Config) -> EngineRequest:
    """The server's per-request bounds, the same for every dialect; unset max_tokens
    becomes the cap, so no request is unbounded."""
    sampling = request.sampling
    if len(sampling.stop) > config.max_stop:
        raise LimitExceeded(
            f"stop: {len(sampling.stop)} stop sequences, more than the limit of "
            f"{config.max_stop} (SLM_MAX_STOP)"
        )
    if sampling.max_tokens is not None and sampling.max_tokens > config.max_tokens:
        raise LimitExceeded(
            f"max_tokens (num_predict): {sampling.max_tokens} is more than the limit of "
            f"{config.max_tokens} (SLM_MAX_TOKENS)"
        )
    return dataclasses.replace(
        request, sampling=dataclasses.replace(sampling, max_tokens=sampling.max_tokens or config.max_tokens)
    )


async def _next(events: AsyncIterator[Event], deadline: float | None, limit: float) -> Event:
    if deadline is None:
        return await anext(events)
    try:
        return await asyncio.wait_for(anext(events), timeout=max(0.0, deadline - time.perf_counter()))
    except TimeoutError as exc:
        raise DeadlineExceeded(f"request took longer than {limit:g}s (SLM_REQUEST_TIMEOUT)") from exc


async def complete(
    manager: ModelManager, model: str, request: EngineRequest, keep_alive: float | None
) -> tuple[str, Done]:
    parts: list[str] = []
    logprobs: list[TokenLogprob] = []
    done: Done | None = None
    async for item in stream(manager, model, request, keep_alive):
        if isinstance(item, Delta):
            parts.append(item.text)
            logprobs += item.logprobs
        else:
            done = item
    assert done is not None
    return "".join(parts), dataclasses.replace(done, logprobs=tuple(logprobs))


async def primed(items: AsyncIterator[Delta | Done]) -> AsyncIterator[Delta | Done]:
    """Start a stream before the HTTP response begins, so that errors raised before the
    first item (unknown model, prompt too long, load failure) still get a proper status."""
    first = await anext(items)

    async def rest() -> AsyncIterator[Delta | Done]:
        try:
            yield first
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    return rest()
