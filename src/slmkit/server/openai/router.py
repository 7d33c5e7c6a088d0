"""OpenAI-compatible routes under /v1: JSON, SSE stream, or error."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request

from slmkit.server.cancellation import cancel_on_disconnect
from slmkit.server.openai import protocol as p
from slmkit.server.openai import serving
from slmkit.server.respond import json_or_sse
from slmkit.server.state import StateDep

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/chat/completions")
async def chat_completions(req: p.ChatCompletionRequest, state: StateDep, request: Request) -> Any:
    return json_or_sse(await cancel_on_disconnect(request, serving.chat(state, req)))


@router.post("/completions")
async def completions(req: p.CompletionRequest, state: StateDep, request: Request) -> Any:
    return json_or_sse(await cancel_on_disconnect(request, serving.completion(state, req)))


@router.post("/chat/completions/render")
async def render_chat(req: p.ChatCompletionRequest, state: StateDep, request: Request) -> Any:
    return await cancel_on_disconnect(request, serving.render_chat(state, req))


@router.post("/completions/render")
async def render_completion(req: p.CompletionRequest, state: StateDep, request: Request) -> Any:
    return await cancel_on_disconnect(request, serving.render_completion(state, req))


@router.post("/embeddings")
async def embeddings(req: p.EmbeddingRequest, state: StateDep, request: Request) -> Any:
    return await cancel_on_disconnect(request, serving.embeddings(state, req))


@router.get("/models")
async def models(state: StateDep) -> Any:
    return await serving.list_models(state)


@router.get("/models/{model_id:path}")
async def model(model_id: str, state: StateDep) -> Any:
    return await asyncio.to_thread(serving.get_model, state, model_id)
