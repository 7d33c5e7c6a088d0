"""The one internal request path that every API dialect goes through.

An adapter turns its wire request into an EngineRequest, calls :func:`stream` (or
:func:`complete`), and turns the Delta/Done items back into its wire format.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from slmkit.engine.manager import ModelManager
from slmkit.engine.types import (
    EngineRequest,
    Event,
    Failed,
    Finished,
    FinishReason,
    GenerationStats,
    TextDelta,
)
from slmkit.errors import DeadlineExceeded


@dataclass(frozen=True)
class Delta:
    text: str  # new text, never empty


@dataclass(frozen=True)
class Done:
    model: str  # display name of the model that answered
    finish_reason: FinishReason
    stats: GenerationStats
    load_seconds: float  # time spent loading the model for this request
    total_seconds: float  # from receipt to the last token


def new_request_id() -> str:
    return uuid.uuid4().hex


async def stream(
    manager: ModelManager, model: str, request: EngineRequest, keep_alive: float | None
) -> AsyncIterator[Delta | Done]:
    """Run one generation, yielding text deltas then one Done; raises SlmError on failure.

    Closing the iterator early (client gone) aborts the request in the worker.
    """
    started = time.perf_counter()
    limit = manager.config.request_timeout
    deadline = started + limit if limit > 0 else None
    async with manager.use(model, keep_alive) as (loaded, load_seconds):
        events = loaded.worker.generate(request)
        try:
            while True:
                event = await _next(events, deadline, limit)
                if isinstance(event, TextDelta):
                    if event.text:
                        yield Delta(event.text)
                elif isinstance(event, Finished):
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
    done: Done | None = None
    async for item in stream(manager, model, request, keep_alive):
        if isinstance(item, Delta):
            parts.append(item.text)
        else:
            done = item
    assert done is not None
    return "".join(parts), done


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
