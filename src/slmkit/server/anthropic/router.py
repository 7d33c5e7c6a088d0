"""Anthropic-compatible routes: `POST /v1/messages` (JSON or SSE events) and
`POST /v1/messages/count_tokens`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from slmkit.server.anthropic import protocol as p
from slmkit.server.anthropic import serving
from slmkit.server.cancellation import cancel_on_disconnect
from slmkit.server.respond import json_or_sse
from slmkit.server.state import StateDep

router = APIRouter(prefix="/v1", tags=["anthropic"])


@router.post("/messages")
async def messages(req: p.MessagesRequest, state: StateDep, request: Request) -> Any:
    return json_or_sse(await cancel_on_disconnect(request, serving.messages(state, req)))


@router.post("/messages/count_tokens")
async def count_tokens(req: p.CountTokensRequest, state: StateDep) -> Any:
    return await serving.count_tokens(state, req)
