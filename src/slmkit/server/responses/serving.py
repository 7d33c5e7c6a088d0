"""Serving the Responses API: answers through the one pipeline, kept per API key."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from slmkit.answer import generation
from slmkit.errors import PreviousResponseNotFound, ResponseNotFound
from slmkit.server import answers, context
from slmkit.server.errors import guard_stream
from slmkit.server.responses.protocol import MAX_ID, ResponsesRequest, ResponseStream, _sse, to_response
from slmkit.server.state import ServerState


async def create(state: ServerState, req: ResponsesRequest) -> dict[str, Any] | AsyncIterator[str]:
    rid = generation.new_request_id()
    created = int(time.time())
    owner = context.owner()
    prior: tuple[dict[str, Any], ...] = ()
    if req.previous_response_id is not None:
        previous = state.responses.get(owner, req.previous_response_id)
        if previous is None:
            raise PreviousResponseNotFound(req.previous_response_id)
        prior = previous.context
    engine_request = req.engine_request(rid, prior)

    def keep(response: dict[str, Any]) -> None:
        if req.store:
            state.responses.put(owner, response, (*prior, *req.input_items(), *response["output"]))

    if not req.stream:
        response = to_response(req, rid, created, await answers.complete(state, req.model, engine_request))
        keep(response)
        return response
    events = await answers.started(state, req.model, engine_request)
    out = ResponseStream(req, rid, created)

    async def lines() -> AsyncIterator[str]:
        for data in out.start():
            yield _sse(data)
        async for event in events:
            for data in out.event(event):
                yield _sse(data)
        if out.final is not None:
            keep(out.final)

    return guard_stream(lines(), lambda exc: _sse(out.error(exc)))


def retrieve(state: ServerState, response_id: str) -> dict[str, Any]:
    stored = state.responses.get(context.owner(), response_id)
    if stored is None:
        raise ResponseNotFound(response_id[:MAX_ID])
    response: dict[str, Any] = stored.response
    return response


def delete(state: ServerState, response_id: str) -> dict[str, Any]:
    if not state.responses.delete(context.owner(), response_id):
        raise ResponseNotFound(response_id[:MAX_ID])
    return {"id": response_id, "object": "response", "deleted": True}
