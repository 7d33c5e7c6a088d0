"""The Responses API's routes under /v1."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query, Request

from slmkit.server.cancellation import cancel_on_disconnect
from slmkit.server.respond import json_or_sse
from slmkit.server.responses import serving
from slmkit.server.responses.protocol import MAX_ID, InputTokensRequest, ResponsesRequest
from slmkit.server.state import StateDep

router = APIRouter(prefix="/v1", tags=["responses"])


@router.post("/responses")
async def responses(req: ResponsesRequest, state: StateDep, request: Request) -> Any:
    return json_or_sse(await cancel_on_disconnect(request, serving.create(state, req)))


@router.post("/responses/input_tokens")
async def input_tokens(req: InputTokensRequest, state: StateDep) -> Any:
    return await serving.input_tokens(state, req)


@router.get("/responses/{response_id}")
async def get_response(
    response_id: str,
    state: StateDep,
    stream: bool = False,
    starting_after: int | None = Query(default=None, ge=-1),
) -> Any:
    return json_or_sse(await serving.retrieve(state, response_id, stream, starting_after))


@router.post("/responses/{response_id}/cancel")
async def cancel_response(response_id: str, state: StateDep) -> Any:
    return await serving.cancel(state, response_id)


@router.get("/responses/{response_id}/input_items")
async def input_items(
    response_id: str,
    state: StateDep,
    limit: int = Query(default=20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = Query(default=None, max_length=MAX_ID),
) -> Any:
    return await serving.input_items(state, response_id, limit, order, after)


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, state: StateDep) -> Any:
    return await serving.delete(state, response_id)
