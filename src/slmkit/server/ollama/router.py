"""Ollama-compatible routes under /api: JSON, NDJSON stream, or error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from slmkit.server.cancellation import cancel_on_disconnect
from slmkit.server.ollama import protocol as p
from slmkit.server.ollama import serving
from slmkit.server.state import StateDep

router = APIRouter(prefix="/api", tags=["ollama"])


def _respond(result: dict[str, Any] | AsyncIterator[str]) -> Any:
    if isinstance(result, dict):
        return JSONResponse(result)
    return StreamingResponse(result, media_type="application/x-ndjson")


@router.post("/generate")
async def generate(req: p.GenerateRequest, state: StateDep, request: Request) -> Any:
    return _respond(await cancel_on_disconnect(request, serving.generate(state, req)))


@router.post("/chat")
async def chat(req: p.ChatRequest, state: StateDep, request: Request) -> Any:
    return _respond(await cancel_on_disconnect(request, serving.chat(state, req)))


@router.post("/embed")
async def embed(req: p.EmbedRequest, state: StateDep, request: Request) -> Any:
    return await cancel_on_disconnect(request, serving.embed(state, req))


@router.post("/embeddings")
async def embeddings(req: p.LegacyEmbeddingsRequest, state: StateDep, request: Request) -> Any:
    return await cancel_on_disconnect(request, serving.legacy_embeddings(state, req))


@router.get("/tags")
async def tags(state: StateDep) -> Any:
    return await asyncio.to_thread(serving.tags, state)  # reads the store: off the event loop


@router.post("/show")
async def show(req: p.ModelRef, state: StateDep) -> Any:
    return await serving.show(state, req)


@router.get("/events")
async def events(state: StateDep) -> Any:
    """Loads, unloads, evictions and pulls as server-sent events (slmkit's addition)."""
    stream = state.events.stream()
    first = await anext(stream)  # refused here (503) when too many streams are open
    return StreamingResponse(
        _prepend(first, stream), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


async def _prepend(first: str, rest: AsyncIterator[str]) -> AsyncIterator[str]:
    try:
        yield first
        async for line in rest:
            yield line
    finally:  # the client went: the subscription ends now, not when collected
        await rest.aclose()  # type: ignore[attr-defined]


@router.post("/plan")
async def plan(req: p.PlanRequest, state: StateDep) -> Any:
    """What loading the model would do now, without loading it (slmkit's addition)."""
    n_ctx, n_parallel = req.settings()
    return (await state.manager.plan_load(req.model, n_ctx=n_ctx, n_parallel=n_parallel)).to_json()


@router.get("/ps")
async def ps(state: StateDep) -> Any:
    return serving.ps(state)


@router.get("/version")
async def version() -> Any:
    return serving.version()


@router.post("/pull")
async def pull(req: p.PullRequest, state: StateDep) -> Any:
    return _respond(await serving.pull(state, req))


@router.post("/create")
async def create(req: p.CreateRequest, state: StateDep) -> Any:
    return _respond(await serving.create(state, req))


@router.head("/blobs/{digest}")
async def blob_exists(digest: str, state: StateDep) -> Response:
    await serving.blob_exists(state, digest)  # NotFound (404) when absent
    return Response(status_code=200)


@router.post("/blobs/{digest}", status_code=201)
async def upload_blob(digest: str, request: Request, state: StateDep) -> Response:
    await serving.upload_blob(state, digest, request.stream())
    return Response(status_code=201)


@router.post("/stop")
async def stop(req: p.StopRequest, state: StateDep) -> Any:
    return await serving.stop(state, req)


@router.post("/copy")
async def copy(req: p.CopyRequest, state: StateDep) -> Response:
    await serving.copy(state, req)
    return Response(status_code=200)


@router.delete("/delete")
async def delete(req: p.ModelRef, state: StateDep) -> Response:
    await serving.delete(state, req)
    return Response(status_code=200)
