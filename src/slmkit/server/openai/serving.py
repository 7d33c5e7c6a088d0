"""OpenAI endpoints' logic: wire request in, JSON dict or SSE lines out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from slmkit.errors import InvalidRequest, ModelNotFound
from slmkit.names import ModelName
from slmkit.server import generation
from slmkit.server.generation import Delta, Done
from slmkit.server.openai import protocol as p
from slmkit.server.state import ServerState


def _sse(data: dict[str, Any] | str) -> str:
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {body}\n\n"


def sse_error(exc: Exception) -> str:
    from slmkit.server.errors import openai_body, public_message, status_for

    return _sse(openai_body(public_message(exc), status_for(exc)))


async def chat(state: ServerState, req: p.ChatCompletionRequest) -> dict[str, Any] | AsyncIterator[str]:
    rid = generation.new_request_id()
    engine_request = p.from_openai_chat(req, rid)
    created = p.now()
    if not req.stream:
        text, done = await generation.complete(state.manager, req.model, engine_request, None)
        return p.to_openai_chat(text, done, rid, created)
    items = await generation.primed(generation.stream(state.manager, req.model, engine_request, None))

    async def lines() -> AsyncIterator[str]:
        first = True
        try:
            async for item in items:
                model = item.model if isinstance(item, Done) else req.model
                if first:
                    yield _sse(
                        p.to_openai_chat_chunk(
                            rid,
                            created,
                            model,
                            role=True,
                            content="",
                            include_usage=req.include_usage,
                        )
                    )
                    first = False
                if isinstance(item, Delta):
                    yield _sse(
                        p.to_openai_chat_chunk(
                            rid, created, model, content=item.text, include_usage=req.include_usage
                        )
                    )
                else:
                    yield _sse(
                        p.to_openai_chat_chunk(
                            rid, created, model, done=item, include_usage=req.include_usage
                        )
                    )
                    if req.include_usage:
                        yield _sse(p.usage_chunk(rid, created, item, "chat.completion.chunk", "chatcmpl"))
        except InvalidRequest as exc:
            yield sse_error(exc)
        except Exception as exc:
            yield sse_error(exc)
        yield _sse("[DONE]")

    return lines()


async def completion(state: ServerState, req: p.CompletionRequest) -> dict[str, Any] | AsyncIterator[str]:
    rid = generation.new_request_id()
    engine_request = p.from_openai_completion(req, rid)
    created = p.now()
    if not req.stream:
        text, done = await generation.complete(state.manager, req.model, engine_request, None)
        return p.to_openai_completion(text, done, rid, created)
    items = await generation.primed(generation.stream(state.manager, req.model, engine_request, None))

    async def lines() -> AsyncIterator[str]:
        try:
            async for item in items:
                if isinstance(item, Delta):
                    yield _sse(p.to_openai_completion_chunk(rid, created, req.model, item.text))
                else:
                    yield _sse(p.to_openai_completion_chunk(rid, created, item.model, "", done=item))
                    if req.include_usage:
                        yield _sse(p.usage_chunk(rid, created, item, "text_completion", "cmpl"))
        except Exception as exc:
            yield sse_error(exc)
        yield _sse("[DONE]")

    return lines()


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
