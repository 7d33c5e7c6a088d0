"""Routes of the tokenizer endpoints, mounted at the root and under /v1."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from slmkit.server.state import StateDep
from slmkit.server.tokenizer.protocol import DetokenizeRequest, TokenizeRequest
from slmkit.server.tokenizer.serving import detokenize, tokenize, tokenizer_info


def router(prefix: str) -> APIRouter:
    routes = APIRouter(prefix=prefix, tags=["tokenizer"])

    @routes.post("/tokenize")
    async def tokenize_route(req: TokenizeRequest, state: StateDep) -> Any:
        return await tokenize(state, req)

    @routes.post("/detokenize")
    async def detokenize_route(req: DetokenizeRequest, state: StateDep) -> Any:
        return await detokenize(state, req)

    @routes.get("/tokenizer_info")
    async def tokenizer_info_route(state: StateDep, model: str | None = None) -> Any:
        return await tokenizer_info(state, model)

    return routes
