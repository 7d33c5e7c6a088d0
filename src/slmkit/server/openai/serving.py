"""OpenAI endpoints' logic: wire request in, JSON dict or SSE lines out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

from slmkit.engine.types import EngineRequest
from slmkit.errors import InvalidRequest, ModelNotFound
from slmkit.names import ModelName
from slmkit.server import generation, thinking
from slmkit.server import tools as tools_api
from slmkit.server.errors import guard_stream, openai_body, public_message, status_for
from slmkit.server.generation import Delta, Done
from slmkit.server.openai import protocol as p
from slmkit.server.state import ServerState


def _sse(data: dict[str, Any] | str) -> str:
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {body}\n\n"


def _sse_error(exc: Exception) -> str:
    return _sse(openai_body(public_message(exc), status_for(exc)))


async def _respond(
    state: ServerState,
    stream: bool,
    engine_request: EngineRequest,
    out: p.Responder,
    n: int = 1,
    tools: list[tools_api.Tool] | None = None,
    choice: tools_api.Choice | None = None,
    splits: bool = False,
) -> dict[str, Any] | AsyncIterator[str]:
    requests = [engine_request] if n == 1 else [_variant(engine_request, i) for i in range(n)]
    if not stream:
        results = list(
            await asyncio.gather(*(generation.complete(state.manager, out.model, r, None) for r in requests))
        )
        parts = [thinking.split(text) if splits else ("", text) for text, _ in results]
        results = [(answer, done) for (_, answer), (_, done) in zip(parts, results, strict=True)]
        calls = [tools_api.calls_in(text, tools or [], choice) for text, _ in results]
        return out.full(results, calls, [thought for thought, _ in parts])
    streams = [
        await generation.primed(generation.stream(state.manager, out.model, r, None)) for r in requests
    ]

    async def lines() -> AsyncIterator[str]:
        for chunk in out.start(n):
            yield _sse(chunk)
        dones: list[Done] = []
        holds = [tools_api.Holdback(tools or [], choice) for _ in range(n)]
        splitters = {i: thinking.Splitter() for i in range(n)} if splits else {}
        async for index, item in _merge(streams):
            if isinstance(item, Delta) and index in splitters:
                thought, answer = splitters[index].feed(item.text)
                if thought:
                    yield _sse(out.delta(None, (), index, reasoning=thought))
                if not answer:
                    continue
                item = Delta(answer, item.logprobs)
            if isinstance(item, Done):
                dones.append(item)
                text, calls = holds[index].finish()
                if text:
                    yield _sse(out.delta(text, (), index))
                for chunk in out.end(item, index, calls):
                    yield _sse(chunk)
            elif text := holds[index].feed(item.text):
                yield _sse(out.delta(text, item.logprobs, index))
        for chunk in out.usage_chunk(dones):
            yield _sse(chunk)

    return guard_stream(lines(), _sse_error, tail=_sse("[DONE]"))


def _variant(request: EngineRequest, i: int) -> EngineRequest:
    """The i-th of ``n`` answers: its own id, and its own seed when the caller fixed one."""
    seed = request.sampling.seed
    sampling = dataclasses.replace(request.sampling, seed=None if seed is None else seed + i)
    return dataclasses.replace(request, request_id=f"{request.request_id}-{i}", sampling=sampling)


async def _merge(streams: list[AsyncIterator[Delta | Done]]) -> AsyncIterator[tuple[int, Delta | Done]]:
    """Items of several streams as they come, tagged with their stream's index."""
    if len(streams) == 1:
        async for only in streams[0]:
            yield 0, only
        return
    queue: asyncio.Queue[tuple[int, Delta | Done | Exception | None]] = asyncio.Queue()

    async def pump(index: int, items: AsyncIterator[Delta | Done]) -> None:
        try:
            async for item in items:
                await queue.put((index, item))
        except Exception as exc:  # handed to the consumer, which raises it at the stream's boundary
            await queue.put((index, exc))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        running = len(tasks)
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def chat(state: ServerState, req: p.ChatCompletionRequest) -> dict[str, Any] | AsyncIterator[str]:
    out = p.Responder(True, generation.new_request_id(), req.model, req.include_usage, bool(req.logprobs))
    tools, choice = req.tool_setup()
    think = req.think()
    extra = (
        thinking.template_vars(state.store.get(req.model), think, "reasoning_effort")
        if think is not None
        else ()
    )
    native = bool(tools) and tools_api.supports_tools(thinking.template_of(state.store.get(req.model)))
    engine_request = p.from_openai_chat(req, out.request_id, extra, native)
    return await _respond(state, req.stream, engine_request, out, req.n or 1, tools, choice, bool(think))


async def completion(state: ServerState, req: p.CompletionRequest) -> dict[str, Any] | AsyncIterator[str]:
    out = p.Responder(
        False, generation.new_request_id(), req.model, req.include_usage, req.logprobs is not None
    )
    return await _respond(state, req.stream, p.from_openai_completion(req, out.request_id), out, req.n or 1)


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
