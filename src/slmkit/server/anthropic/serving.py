"""`POST /v1/messages` logic: one engine request, a message or Anthropic's SSE events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from slmkit.answer import generation
from slmkit.server import answers
from slmkit.server.anthropic import protocol as p
from slmkit.server.errors import guard_stream, public_message, status_for
from slmkit.server.state import ServerState


def _event(kind: str, data: dict[str, Any]) -> str:
    body = json.dumps({"type": kind, **data}, separators=(",", ":"), ensure_ascii=False)
    return f"event: {kind}\ndata: {body}\n\n"


def _error(exc: Exception) -> str:
    body = p.error_body(public_message(exc), status_for(exc))
    return f"event: error\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


async def messages(state: ServerState, req: p.MessagesRequest) -> dict[str, Any] | AsyncIterator[str]:
    request_id = generation.new_request_id()
    engine_request = p.from_anthropic(req, request_id)
    if not req.stream:
        return p.message(request_id, await answers.complete(state, req.model, engine_request))
    events = await answers.started(state, req.model, engine_request)
    out = p.MessageStream(request_id, req.model)

    async def lines() -> AsyncIterator[str]:
        for kind, data in out.start():
            yield _event(kind, data)
        async for event in events:
            for kind, data in out.event(event):
                yield _event(kind, data)

    return guard_stream(lines(), _error)


async def count_tokens(state: ServerState, req: p.CountTokensRequest) -> dict[str, Any]:
    """The prompt's tokens as generating it would count them (``usage.input_tokens``)."""
    engine_request = p.from_anthropic(req, f"count-{generation.new_request_id()}")
    return {"input_tokens": await generation.count(state.manager, req.model, engine_request)}
