"""The server's door to the answer pipeline (answer/generation.py): the same calls, with the
request's context (server/context.py) as the meter for metrics and the access log."""

from __future__ import annotations

from collections.abc import AsyncIterator

from slmkit.answer import generation
from slmkit.answer.generation import Answer, AnswerEvent
from slmkit.pipe import EngineRequest
from slmkit.server import context
from slmkit.server.state import ServerState


def stream(
    state: ServerState, model: str, request: EngineRequest, keep_alive: float | None = None
) -> AsyncIterator[AnswerEvent]:
    return generation.stream(state.manager, model, request, keep_alive, context.current.get())


async def started(
    state: ServerState, model: str, request: EngineRequest, keep_alive: float | None = None
) -> AsyncIterator[AnswerEvent]:
    """A stream whose first event has come: errors before it still get their HTTP status."""
    return await generation.primed(stream(state, model, request, keep_alive))


async def complete(
    state: ServerState, model: str, request: EngineRequest, keep_alive: float | None = None
) -> Answer:
    return await generation.complete(state.manager, model, request, keep_alive, context.current.get())
