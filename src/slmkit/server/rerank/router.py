"""The rerank routes: /rerank and /v1/rerank (Jina, llama.cpp's server, TEI), /v2/rerank (Cohere)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from slmkit.server.cancellation import cancel_on_disconnect
from slmkit.server.rerank.protocol import CohereRerankRequest, RerankRequest
from slmkit.server.rerank.serving import rerank, rerank_cohere
from slmkit.server.state import StateDep


def router(prefix: str) -> APIRouter:
    r = APIRouter(prefix=prefix, tags=["rerank"])

    @r.post("/rerank")
    async def rerank_route(req: RerankRequest, state: StateDep, request: Request) -> Any:
        return await cancel_on_disconnect(request, rerank(state, req))

    return r


def cohere_router() -> APIRouter:
    r = APIRouter(prefix="/v2", tags=["rerank"])

    @r.post("/rerank")
    async def cohere_route(req: CohereRerankRequest, state: StateDep, request: Request) -> Any:
        return await cancel_on_disconnect(request, rerank_cohere(state, req))

    return r
