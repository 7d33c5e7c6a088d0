"""Ollama endpoints' logic: wire request in, JSON dict or NDJSON lines out."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from slmkit import __version__, modelfile
from slmkit.answer import generation
from slmkit.config import parse_duration
from slmkit.errors import IntegrityError, InvalidRequest, ModelNotFound, NotFound
from slmkit.names import ModelName
from slmkit.pipe import EngineRequest
from slmkit.security.redact import redact_url
from slmkit.server import answers
from slmkit.server.errors import guard_stream, public_message
from slmkit.server.ollama import protocol as p
from slmkit.server.state import ServerState
from slmkit.store import cards


def _line(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n"


async def _load_only(state: ServerState, req: p._Base, chat: bool) -> dict[str, Any]:
    """An empty prompt or message list loads (or, with keep_alive 0, unloads) the model."""
    keep_alive = req.keep_alive_seconds()
    name = (await state.manager.profile(req.model)).name
    if keep_alive == 0:  # after the requests in flight (other users') finish
        await state.manager.stop(name)
    else:
        await state.manager.load(name, keep_alive)
    return p.load_answer(name, chat=chat, unloaded=keep_alive == 0)


async def _run(
    state: ServerState, req: p._Base, engine_request: EngineRequest, chat: bool
) -> dict[str, Any] | AsyncIterator[str]:
    keep_alive = req.keep_alive_seconds()
    if not req.stream:
        answer = await answers.complete(state, req.model, engine_request, keep_alive)
        return p.to_ollama_answer(answer, chat=chat, logprobs=req.logprobs)
    events = await answers.started(state, req.model, engine_request, keep_alive)

    async def lines() -> AsyncIterator[str]:
        async for event in events:
            yield _line(p.to_ollama_chunk(event, req.model, chat=chat, logprobs=req.logprobs))

    return guard_stream(lines(), lambda exc: _line(p.ollama_body(public_message(exc))))


async def generate(state: ServerState, req: p.GenerateRequest) -> dict[str, Any] | AsyncIterator[str]:
    if not req.prompt and not req.system:
        return await _load_only(state, req, chat=False)
    engine_request = p.from_ollama_generate(req, generation.new_request_id())
    return await _run(state, req, engine_request, chat=False)


async def chat(state: ServerState, req: p.ChatRequest) -> dict[str, Any] | AsyncIterator[str]:
    if not req.messages:
        return await _load_only(state, req, chat=True)
    engine_request = p.from_ollama_chat(req, generation.new_request_id())
    return await _run(state, req, engine_request, chat=True)


async def embed(state: ServerState, req: p.EmbedRequest) -> dict[str, Any]:
    import time

    started = time.perf_counter()
    inputs = generation.embedding_inputs(req.input, state.config.max_embed_inputs)
    keep_alive = None if req.keep_alive is None else parse_duration(req.keep_alive)
    out = await generation.embed(
        state.manager, req.model, inputs, dimensions=req.dimensions, keep_alive=keep_alive
    )
    return {
        "model": out.model,
        "embeddings": out.vectors,
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": int(out.load_seconds * 1e9),
        "prompt_eval_count": out.tokens,
    }


async def legacy_embeddings(state: ServerState, req: p.LegacyEmbeddingsRequest) -> dict[str, Any]:
    if not req.prompt:
        return {"embedding": []}
    result = await embed(state, p.EmbedRequest(model=req.model, input=req.prompt, keep_alive=req.keep_alive))
    return {"embedding": result["embeddings"][0]}


def tags(state: ServerState) -> dict[str, Any]:
    return {"models": [p.tag_entry(r) for r in state.store.list()]}


async def show(state: ServerState, req: p.ModelRef) -> dict[str, Any]:
    profile = await state.manager.profile(req.ref)
    record = profile.record
    if profile.upstream is not None or profile.info is None:  # no weights here: the remote engine
        upstream = dict(profile.upstream or {})
        upstream["url"] = redact_url(upstream.get("url", ""))  # never its credentials
        model_info: dict[str, Any] = {"general.architecture": "upstream", **upstream}
    else:
        model_info = dict(profile.info.metadata)
        model_info["general.parameter_count"] = profile.info.parameter_count
    out: dict[str, Any] = {
        "modelfile": modelfile.render(record),
        "parameters": p.parameters_text(profile.parameters),
        "template": record.template or "",
        "details": p.details(record),
        "model_info": model_info,
        "modified_at": p.timestamp(record.modified_at),
        "capabilities": profile.show(),
    }
    if record.system:
        out["system"] = record.system
    if record.config.provenance:  # slmkit's addition: how `quantize`/`convert` made it
        out["provenance"] = record.config.provenance
    measured = await asyncio.to_thread(cards.read, state.store, record)
    if measured is not None:  # slmkit's addition: what `slm eval` measured of this version
        out["quality"] = measured
    return out


def ps(state: ServerState) -> dict[str, Any]:
    from datetime import UTC, datetime

    models = []
    for m in state.manager.loaded():
        expires = m.expires_wall()
        entry = p.tag_entry(m.profile.record)
        entry.pop("modified_at")
        entry.update(
            expires_at=p.timestamp(datetime.fromtimestamp(expires, UTC))
            if expires
            else "9999-12-31T23:59:59Z",
            size_vram=0,
            context_length=m.info.n_ctx,
            num_parallel=m.info.n_parallel,
            threads=(m.worker.info or m.info).n_threads,  # live: the worker may adapt it
        )
        if m.info.memory_bytes:
            entry["size"] = m.info.memory_bytes
        models.append(entry)
    return {"models": models}


def version() -> dict[str, Any]:
    return {"version": __version__}


async def copy(state: ServerState, req: p.CopyRequest) -> None:
    await asyncio.to_thread(state.store.copy, req.source, req.destination)
    state.manager.forget(req.destination)


async def stop(state: ServerState, req: p.StopRequest) -> dict[str, Any]:
    """Unload a model: once its requests in flight finish, or (``force``) at once, ending
    them with an error. Answers whether it is gone yet."""
    name = (await state.manager.profile(req.ref)).name
    gone = await state.manager.stop(name, force=req.force)
    return {"model": name, "status": "unloaded" if gone else "unloading"}


async def delete(state: ServerState, req: p.ModelRef) -> None:
    name = ModelName.parse(req.ref)
    if not await asyncio.to_thread(state.store.exists, name):
        raise ModelNotFound(req.ref)
    await state.manager.unload(name.display)
    await asyncio.to_thread(state.store.delete, name)
    state.manager.forget(name.display)


async def pull(state: ServerState, req: p.PullRequest) -> dict[str, Any] | AsyncIterator[str]:
    from slmkit.server.ollama import pulls

    progress = pulls.pull(state, req.ref, insecure=req.insecure)
    if not req.stream:
        async for _ in progress:
            pass
        return {"status": "success"}
    first = await anext(progress)  # errors before any progress get a proper status

    async def lines() -> AsyncIterator[str]:
        yield _line(first)
        async for item in progress:
            yield _line(item)

    return guard_stream(lines(), lambda exc: _line(p.ollama_body(public_message(exc))))


async def create(state: ServerState, req: p.CreateRequest) -> dict[str, Any] | AsyncIterator[str]:
    from slmkit.server.ollama.create import create as create_model

    record = await asyncio.to_thread(create_model, state.store, req)
    state.manager.forget(record.name.display)
    steps = [
        {"status": f"using existing layer {record.manifest.model_layer.digest}"},
        {"status": "writing manifest"},
        {"status": "success"},
    ]
    if not req.stream:
        return steps[-1]

    async def lines() -> AsyncIterator[str]:
        for step in steps:
            yield _line(step)

    return lines()


async def blob_exists(state: ServerState, digest: str) -> None:
    if not await asyncio.to_thread(state.store.blobs.exists, digest):
        raise NotFound(f"blob {digest} not found")


async def upload_blob(state: ServerState, digest: str, chunks: AsyncIterator[bytes]) -> None:
    """Stream a request body into the store, checking it hashes to ``digest``."""
    from slmkit.store import parse_digest

    expected = parse_digest(digest)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)

    def source() -> Iterator[bytes]:
        while True:
            chunk = asyncio.run_coroutine_threadsafe(queue.get(), loop).result()
            if chunk is None:
                return
            yield chunk

    writer = asyncio.ensure_future(asyncio.to_thread(state.store.blobs.write_chunks, source(), expected))
    try:
        async for chunk in chunks:
            await queue.put(chunk)
    finally:
        await queue.put(None)
    try:
        await writer
    except IntegrityError as exc:  # the caller sent other bytes than it named: its mistake
        raise InvalidRequest(str(exc)) from exc
