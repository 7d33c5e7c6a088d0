"""OpenAI endpoints' logic: wire request in, JSON dict or SSE lines out."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from slmkit.answer import generation
from slmkit.answer.generation import Answer, AnswerEvent, Done
from slmkit.errors import ModelNotFound, SlmError
from slmkit.names import ModelName
from slmkit.pipe import EngineRequest
from slmkit.server import answers
from slmkit.server.errors import guard_stream, public_message, status_for
from slmkit.server.openai import protocol as p
from slmkit.server.state import ServerState
from slmkit.store import cards


def _sse(data: dict[str, Any] | str) -> str:
    body = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"data: {body}\n\n"


def _sse_error(exc: Exception) -> str:
    return _sse(p.openai_body(public_message(exc), status_for(exc)))


async def _respond(
    state: ServerState,
    stream: bool,
    prompts: list[EngineRequest],
    out: p.Responder,
    n: int = 1,
    finish: Callable[[int, Answer, Answer], Answer] | None = None,
) -> dict[str, Any] | AsyncIterator[str]:
    """``n`` answers to each prompt's request, run together; choice i*n+j is prompt i's j-th.
    ``finish`` reshapes a whole answer (the completions echo) before it is sent, given the
    first answer to the same prompt too."""
    requests = [r if n == 1 else _variant(r, j) for r in prompts for j in range(n)]
    if not stream:
        results = list(await asyncio.gather(*(answers.complete(state, out.model, r) for r in requests)))
        if finish is not None:
            results = [finish(i // n, a, results[i - i % n]) for i, a in enumerate(results)]
        return out.full(results, n)
    streams = [await answers.started(state, out.model, r) for r in requests]

    async def lines() -> AsyncIterator[str]:
        for chunk in out.start(len(requests)):
            yield _sse(chunk)
        dones: dict[int, Done] = {}
        async for index, event in _merge(streams):
            if isinstance(event, Done):
                dones[index] = event
            for chunk in out.event(event, index):
                yield _sse(chunk)
        for chunk in out.usage_chunk([dones[i] for i in sorted(dones)], n):
            yield _sse(chunk)

    return guard_stream(lines(), _sse_error, tail=_sse("[DONE]"))


def _variant(request: EngineRequest, i: int) -> EngineRequest:
    """The i-th of ``n`` answers: its own id, and its own seed when the caller fixed one. The
    prompt is scored (echo) by the first only: the others would score it again the same."""
    options = tuple((k, v + i if k == "seed" else v) for k, v in request.options)
    sampling = request.sampling if i == 0 else dataclasses.replace(request.sampling, prompt_logprobs=None)
    return dataclasses.replace(
        request, request_id=f"{request.request_id}-{i}", options=options, sampling=sampling
    )


async def _merge(streams: list[AsyncIterator[AnswerEvent]]) -> AsyncIterator[tuple[int, AnswerEvent]]:
    """Items of several streams as they come, tagged with their stream's index."""
    if len(streams) == 1:
        async for only in streams[0]:
            yield 0, only
        return
    queue: asyncio.Queue[tuple[int, AnswerEvent | Exception | None]] = asyncio.Queue()

    async def pump(index: int, items: AsyncIterator[AnswerEvent]) -> None:
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


async def chat(
    state: ServerState, req: p.ChatCompletionRequest, priority: int = 0
) -> dict[str, Any] | AsyncIterator[str]:
    """``priority`` 0 is interactive; batch jobs (server/batches/serving.py) run at 1."""
    out = p.Responder(True, generation.new_request_id(), req.model, req.include_usage, bool(req.logprobs))
    engine_request = dataclasses.replace(p.from_openai_chat(req, out.request_id), priority=priority)
    return await _respond(state, req.stream, [engine_request], out, req.n or 1)


async def completion(
    state: ServerState, req: p.CompletionRequest, priority: int = 0
) -> dict[str, Any] | AsyncIterator[str]:
    out = p.Responder(
        False, generation.new_request_id(), req.model, req.include_usage, req.logprobs is not None
    )
    prompts = req.prompts()

    def echo(index: int, answer: Answer, first: Answer) -> Answer:
        scored = first.done.stats.prompt_logprobs  # the prompt's scores: its first answer's
        return p.echoed(answer, prompts[index], scored, generate=req.max_tokens != 0)

    prompts_in = p.from_openai_completion(req, out.request_id)
    requests = [dataclasses.replace(r, priority=priority) for r in prompts_in]
    return await _respond(state, req.stream, requests, out, req.n or 1, echo if req.echo else None)


async def render_chat(state: ServerState, req: p.ChatCompletionRequest) -> dict[str, Any]:
    """vLLM's ``POST /v1/chat/completions/render``: what the request would run, unrun."""
    request = p.from_openai_chat(req, f"chatcmpl-{generation.new_request_id()}")
    resolved, tokens, _ = await generation.render(state.manager, req.model, request)
    return p.to_render(resolved, tokens, req.model)


async def render_completion(state: ServerState, req: p.CompletionRequest) -> list[dict[str, Any]]:
    """vLLM's ``POST /v1/completions/render``: one rendered request per prompt."""
    out = []
    for request in p.from_openai_completion(req, f"cmpl-{generation.new_request_id()}"):
        resolved, tokens, _ = await generation.render(state.manager, req.model, request)
        out.append(p.to_render(resolved, tokens, req.model))
    return out


async def embeddings(state: ServerState, req: p.EmbeddingRequest, priority: int = 0) -> dict[str, Any]:
    inputs = generation.embedding_inputs(req.input, state.config.max_embed_inputs)
    out = await generation.embed(
        state.manager, req.model, inputs, dimensions=req.dimensions, priority=priority
    )
    return p.to_openai_embeddings(out.model, out.vectors, out.tokens, req.encoding_format)


async def list_models(state: ServerState) -> dict[str, Any]:
    """Every stored model; each card also says what it can do (slmkit's ``capabilities``,
    Ollama's names), so a client can tell an embedding-only model from a chat model."""
    records = await asyncio.to_thread(state.store.list)  # reads the store: off the event loop
    cards = []
    for r in records:
        card = p.model_card(r.name.display, r.modified_at.timestamp())
        try:
            card["capabilities"] = (await state.manager.profile(r.name.display)).show()
        except SlmError:
            pass  # a model that cannot be read is still listed, as the store has it
        cards.append(card)
    return {"object": "list", "data": cards}


def get_model(state: ServerState, model_id: str) -> dict[str, Any]:
    name = ModelName.parse(model_id)
    if not state.store.exists(name):
        raise ModelNotFound(model_id)
    record = state.store.get(name)
    card = p.model_card(record.name.display, record.modified_at.timestamp())
    measured = cards.read(state.store, record)
    if measured is not None:  # slmkit's: what `slm eval` measured of this very version
        card["quality"] = measured
    return card
