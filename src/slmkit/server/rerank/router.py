"""The rerank route, mounted at the root and under /v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from slmkit.server.cancellation import cancel_on_disconnect
from slmkit.server.rerank.protocol import RerankRequest
from slmkit.server.rerank.serving import rerank
from slmkit.server.state import StateDep


def router(prefix: str) -> APIRouter:
    r = APIRouter(prefix=prefix, tags=["rerank"])

    @r.post("/rerank")
    async def rerank_route(req: RerankRequest, state: StateDep, request: Request) -> Any:
        return await cancel_on_disconnect(request, rerank(state, req))

    return r
