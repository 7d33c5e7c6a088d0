"""OpenAI endpoints' logic: wire request in, JSON dict or SSE lines out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from slmkit.engine.types import EngineRequest
from slmkit.errors import InvalidRequest, ModelNotFound
from slmkit.names import ModelName
from slmkit.server import generation
from slmkit.server.errors import guard_stream, openai_body, public_message, status_for
from slmkit.server.generation import Done
from slmkit.server.openai import protocol as p
from slmkit.server.state import ServerState


def _sse(data: dict[str, Any] | str) -> str:
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {body}\n\n"


def _sse_error(exc: Exception) -> str:
    return _sse(openai_body(public_message(exc), status_for(exc)))


async def _respond(
    state: ServerState, stream: bool, engine_request: EngineRequest, out: p.Responder
) -> dict[str, Any] | AsyncIterator[str]:
    if not stream:
        text, done = await generation.complete(state.manager, out.model, engine_request, None)
        return out.full(text, done)
    items = await generation.primed(generation.stream(state.manager, out.model, engine_request, None))

    async def lines() -> AsyncIterator[str]:
        for chunk in out.start():
            yield _sse(chunk)
        async for item in items:
            for chunk in out.end(item) if isinstance(item, Done) else [out.delta(item.text, item.logprobs)]:
                yield _sse(chunk)

    return guard_stream(lines(), _sse_error, tail=_sse("[DONE]"))


async def chat(state: ServerState, req: p.ChatCompletionRequest) -> dict[str, Any] | AsyncIterator[str]:
    out = p.Responder(True, generation.new_request_id(), req.model, req.include_usage, bool(req.logprobs))
    return await _respond(state, req.stream, p.from_openai_chat(req, out.request_id), out)


async def completion(state: ServerState, req: p.CompletionRequest) -> dict[str, Any] | AsyncIterator[str]:
    out = p.Responder(
        False, generation.new_request_id(), req.model, req.include_usage, req.logprobs is not None
    )
    return await _respond(state, req.stream, p.from_openai_completion(req, out.request_id), out)


async def embeddings(state: ServerState, req: p.EmbeddingRequest) -> dict[str, Any]:
    inputs = p.embedding_inputs(req)
    async with state.manager.use(req.model) as (loaded, _):
        if req.dimensions is not None and req.dimensions != loaded.info.n_embd:
            raise InvalidRequest(f"dimensions: this model only produces {loaded.info.n_embd} dimensions")
        vectors, tokens = await loaded.worker.embed(inputs)
        return p.to_openai_embeddings(loaded.name, vectors, tokens, req.encoding_format)


def list_models(state: ServerState) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [p.model_card(r.name.display, r.modified_at.timestamp()) for r in state.store.list()],
    }


def get_model(state: ServerState, model_id: str) -> dict[str, Any]:
    name = ModelName.parse(model_id)
    if not state.store.exists(name):
        raise ModelNotFound(model_id)
    record = state.store.get(name)
    return p.model_card(record.name.display, record.modified_at.timestamp())
