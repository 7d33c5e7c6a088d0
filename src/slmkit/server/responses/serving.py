"""Serving the Responses API: answers through the one pipeline, kept per API key."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from slmkit.answer import generation
from slmkit.answer.generation import AnswerEvent
from slmkit.errors import InvalidRequest, PreviousResponseNotFound, ResponseNotFound, SharedStateUnavailable
from slmkit.pipe import EngineRequest
from slmkit.server import answers, context
from slmkit.server.errors import guard_stream
from slmkit.server.responses.background import BackgroundRuns, Run
from slmkit.server.responses.protocol import (
    MAX_ID,
    InputTokensRequest,
    ResponsesRequest,
    ResponseStream,
    _response,
    _sse,
    to_response,
)
from slmkit.server.state import ServerState


async def create(state: ServerState, req: ResponsesRequest) -> dict[str, Any] | AsyncIterator[str]:
    rid = generation.new_request_id()
    created = int(time.time())
    owner = context.owner()
    prior = await _prior(state, owner, req)
    engine_request = req.engine_request(rid, prior)

    async def keep(response: dict[str, Any]) -> None:
        if not req.store:
            return
        inputs = req.input_items()
        try:
            await state.responses.put(owner, response, (*prior, *inputs, *response["output"]), len(inputs))
        except SharedStateUnavailable:  # the answer is made: give it, unkept (logged by the store)
            return

    if req.background:
        return await _background(state, req, rid, created, engine_request, keep)
    if not req.stream:
        response = to_response(req, rid, created, await answers.complete(state, req.model, engine_request))
        await keep(response)
        return response
    events = await answers.started(state, req.model, engine_request)
    out = ResponseStream(req, rid, created)
    if req.store:
        return _stored_stream(state, out, events, f"resp_{rid}", keep)

    async def lines() -> AsyncIterator[str]:
        for data in out.start():
            yield _sse(data)
        async for event in events:
            for data in out.event(event):
                yield _sse(data)

    return guard_stream(lines(), lambda exc: _sse(out.error(exc)))


def _stored_stream(
    state: ServerState, out: ResponseStream, events: AsyncIterator[AnswerEvent], rid: str, keep: Keep
) -> AsyncIterator[str]:
    """A stored response's stream: it runs in a task of its own (background.py, without the
    background limit), so a client that drops the connection re-attaches with
    ``GET /v1/responses/{id}?stream=true&starting_after=N`` and the answer is stored when it
    ends. Its tokens are metered on the request; those made after the client left are charged
    to the key when the run ends."""
    runs = _runs(state)
    ctx = context.current.get()
    charged = [0]  # tokens the request's own accounting (server/observe.py) will charge

    def spent() -> int:
        return ctx.prompt_tokens + ctx.completion_tokens if ctx is not None else 0

    async def work(run: Run) -> None:
        try:
            for data in out.start():
                await runs.emit(run, data)
            run.snapshot = data["response"]
            async for event in events:
                for data in out.event(event):
                    await runs.emit(run, data)
            final = out.final if out.final is not None else run.snapshot
            await keep(final)
            await runs.finish(run, final)
        except asyncio.CancelledError:  # POST .../cancel, or the server stopping: not stored
            await asyncio.shield(runs.finish(run, {**run.snapshot, "status": "cancelled"}))
        except Exception as exc:  # the boundary of the run, as guard_stream is for a stream
            error = out.error(exc)
            await runs.emit(run, error)
            failure = {"code": error["code"], "message": error["message"]}
            await runs.finish(run, {**run.snapshot, "status": "failed", "error": failure})
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            later = spent() - charged[0]
            if ctx is not None and ctx.key is not None and charged[0] and later > 0:
                state.limiter.charge(ctx.key, later)  # made after the client had gone

    pending = _response(out.req, out.rid, out.created, out.req.model, "in_progress", [], None)
    run = runs.start(context.owner(), rid, pending, work, limit=False)

    async def lines() -> AsyncIterator[str]:
        try:
            async for data in run.follow(-1):
                yield _sse(data)
        finally:
            charged[0] = spent()

    return lines()


Keep = Callable[[dict[str, Any]], Awaitable[None]]
CANCEL_WAIT = 10.0  # seconds a cancel waits for another replica to stop a run


async def _background(
    state: ServerState,
    req: ResponsesRequest,
    rid: str,
    created: int,
    engine_request: EngineRequest,
    keep: Keep,
) -> dict[str, Any] | AsyncIterator[str]:
    """``background: true``: the answer runs in a task of its own (background.py); the caller
    gets the queued response at once, or with ``stream`` the events as they come."""
    if not req.store:
        raise _field("background", "a background response must be stored (store: true)")
    out = ResponseStream(req, rid, created)
    queued = {**_response(req, rid, created, req.model, "queued", [], None)}
    ctx = context.current.get()
    mine = context.RequestContext(
        generation.new_request_id(), "POST", "/v1/responses", key=ctx.key if ctx else None
    )
    runs = _runs(state)
    runs.check(context.owner())  # before anything is stored
    await keep(queued)  # readable (and listed) at once, on any replica that shares the store

    async def work(run: Run) -> None:
        token = context.current.set(mine)  # the run's own meter: the HTTP request is long over
        try:
            for data in out.start():
                await runs.emit(run, data)
            run.snapshot = data["response"]
            events = await answers.started(state, req.model, engine_request)
            await keep(run.snapshot)  # in_progress, for whoever polls the store (another replica)
            async for event in events:
                for data in out.event(event):
                    await runs.emit(run, data)
            final = out.final if out.final is not None else run.snapshot
            await keep(final)
            await runs.finish(run, final)
        except asyncio.CancelledError:
            ended = {**run.snapshot, "status": "cancelled"}
            await asyncio.shield(keep(ended))
            await asyncio.shield(runs.finish(run, ended))
        except Exception as exc:  # the boundary of the run, as guard_stream is for a stream
            error = out.error(exc)
            await runs.emit(run, error)
            failure = {"code": error["code"], "message": error["message"]}
            ended = {**run.snapshot, "status": "failed", "error": failure}
            await keep(ended)
            await runs.finish(run, ended)
        finally:
            context.current.reset(token)
            state.metrics.observe_model(mine)
            if mine.key is not None:
                state.limiter.charge(mine.key, mine.prompt_tokens + mine.completion_tokens)

    run = runs.start(context.owner(), f"resp_{rid}", queued, work)
    if req.stream:
        return _lines(run.follow(-1))
    return queued


def _runs(state: ServerState) -> BackgroundRuns:
    runs = state.background
    assert isinstance(runs, BackgroundRuns)  # made by the app (server/app.py)
    return runs


def _field(name: str, message: str) -> InvalidRequest:
    error = InvalidRequest(f"{name}: {message}")
    error.param = name
    return error


async def _lines(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    async for data in events:
        yield _sse(data)


async def _prior(state: ServerState, owner: str, req: ResponsesRequest) -> tuple[dict[str, Any], ...]:
    """The conversation ``previous_response_id`` names (this key's), or nothing."""
    if req.previous_response_id is None:
        return ()
    previous = await state.responses.get(owner, req.previous_response_id)
    if previous is None:
        raise PreviousResponseNotFound(req.previous_response_id)
    prior: tuple[dict[str, Any], ...] = previous.context
    return prior


async def input_tokens(state: ServerState, req: InputTokensRequest) -> dict[str, Any]:
    """``POST /v1/responses/input_tokens``: the tokens this request's input would be, as
    generating it would count them (``usage.input_tokens``), with its previous response."""
    prior = await _prior(state, context.owner(), req)
    engine_request = req.engine_request(f"count-{generation.new_request_id()}", prior)
    count = await generation.count(state.manager, req.model or state.config.default_model, engine_request)
    return {"object": "response.input_tokens", "input_tokens": count}


async def retrieve(
    state: ServerState, response_id: str, stream: bool = False, starting_after: int | None = None
) -> dict[str, Any] | AsyncIterator[str]:
    """The stored response; a background one running here as it stands now. With ``stream``,
    a background response's events after ``starting_after``, then the rest as they come."""
    owner = context.owner()
    run = _runs(state).get(owner, response_id)
    if stream:
        events = await _runs(state).follow(
            owner, response_id, -1 if starting_after is None else starting_after
        )
        if events is None:
            if await state.responses.get(owner, response_id) is None:
                raise ResponseNotFound(response_id[:MAX_ID])
            raise _field(
                "stream",
                "only a background response's events are kept (on the server that runs it unless "
                "SLM_RESPONSES_STORE is shared, and for a while after it ends)",
            )
        return _lines(events)
    if run is not None and run.ended is None:
        return run.snapshot
    stored = await state.responses.get(owner, response_id)
    if stored is None:
        raise ResponseNotFound(response_id[:MAX_ID])
    response: dict[str, Any] = stored.response
    return response


async def cancel(state: ServerState, response_id: str) -> dict[str, Any]:
    """``POST /v1/responses/{id}/cancel``: stop a background response; one that has ended is
    answered as it is."""
    owner = context.owner()
    run = _runs(state).get(owner, response_id)
    if run is not None:
        await _runs(state).cancel(run)
        return run.snapshot
    stored = await state.responses.get(owner, response_id)
    if stored is None:
        raise ResponseNotFound(response_id[:MAX_ID])
    response: dict[str, Any] = stored.response
    if not response.get("background"):
        raise InvalidRequest("only a background response can be cancelled")
    if response.get("status") not in ("queued", "in_progress"):
        return response  # ended: as it is
    if not await _runs(state).cancel_elsewhere(owner, response_id):
        raise InvalidRequest("this background response runs on another server; cancel it there")
    deadline = time.monotonic() + CANCEL_WAIT  # the replica running it looks twice a second
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        stored = await state.responses.get(owner, response_id)
        if stored is not None and stored.response.get("status") not in ("queued", "in_progress"):
            ended: dict[str, Any] = stored.response
            return ended
    return response  # asked; it ends on its replica shortly


async def delete(state: ServerState, response_id: str) -> dict[str, Any]:
    if not await state.responses.delete(context.owner(), response_id):
        raise ResponseNotFound(response_id[:MAX_ID])
    return {"id": response_id, "object": "response", "deleted": True}


async def input_items(
    state: ServerState, response_id: str, limit: int, order: str, after: str | None
) -> dict[str, Any]:
    """``GET /v1/responses/{id}/input_items``: the items the response was made from (its own
    input, not earlier turns), OpenAI's list shape, newest first by default, paged by ``after``."""
    stored = await state.responses.get(context.owner(), response_id)
    if stored is None:
        raise ResponseNotFound(response_id[:MAX_ID])
    items = [_listed(item, response_id, i) for i, item in enumerate(stored.input_items())]
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [item["id"] for item in items]
        if after not in ids:
            raise InvalidRequest(f"after: no input item {after[:MAX_ID]!r} in this response")
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return {
        "object": "list", "data": page, "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None, "has_more": len(items) > limit,
    }  # fmt: skip


def _listed(item: dict[str, Any], response_id: str, i: int) -> dict[str, Any]:
    """An input item as OpenAI lists it: an id (a stable one when the client sent none), and a
    message's text as content parts."""
    out = {"type": "message", **item, "id": item.get("id") or f"msg_{response_id.removeprefix('resp_')}_{i}"}
    if out["type"] == "message" and isinstance(out.get("content"), str):
        kind = "output_text" if out.get("role") == "assistant" else "input_text"
        out["content"] = [{"type": kind, "text": out["content"]}]
    return out
