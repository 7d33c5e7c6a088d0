"""OpenAI-compatible routes under /v1: JSON, SSE stream, or error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from slmkit.server.openai import protocol as p
from slmkit.server.openai import serving
from slmkit.server.state import StateDep

router = APIRouter(prefix="/v1", tags=["openai"])


def _respond(result: dict[str, Any] | AsyncIterator[str]) -> Any:
    if isinstance(result, dict):
        return JSONResponse(result)
    return StreamingResponse(
        result,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/chat/completions")
async def chat_completions(req: p.ChatCompletionRequest, state: StateDep) -> Any:
    return _respond(await serving.chat(state, req))


@router.post("/completions")
async def completions(req: p.CompletionRequest, state: StateDep) -> Any:
    return _respond(await serving.completion(state, req))


@router.post("/embeddings")
async def embeddings(req: p.EmbeddingRequest, state: StateDep) -> Any:
    return await serving.embeddings(state, req)


@router.get("/models")
async def models(state: StateDep) -> Any:
    return serving.list_models(state)


@router.get("/models/{model_id:path}")
async def model(model_id: str, state: StateDep) -> Any:
    return serving.get_model(state, model_id)
