"""`POST /v1/messages` logic: one engine request, a message or Anthropic's SSE events."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from slmkit.server import generation, thinking
from slmkit.server import tools as tools_api
from slmkit.server.anthropic import protocol as p
from slmkit.server.errors import guard_stream, public_message, status_for
from slmkit.server.generation import Done
from slmkit.server.state import ServerState


def _event(kind: str, data: dict[str, Any]) -> str:
    body = json.dumps({"type": kind, **data}, separators=(",", ":"), ensure_ascii=False)
    return f"event: {kind}\ndata: {body}\n\n"


def _error(exc: Exception) -> str:
    body = p.error_body(public_message(exc), status_for(exc))
    return f"event: error\ndata: {json.dumps(body, separators=(',', ':'))}\n\n"


async def messages(state: ServerState, req: p.MessagesRequest) -> dict[str, Any] | AsyncIterator[str]:
    request_id = generation.new_request_id()
    tools, choice = req.tool_setup()
    native = bool(tools) and tools_api.supports_tools(thinking.template_of(state.store.get(req.model)))
    engine_request = p.from_anthropic(req, request_id, native)
    if not req.stream:
        text, done = await generation.complete(state.manager, req.model, engine_request, None)
        calls = tools_api.calls_in(text, tools, choice)
        return p.message(request_id, done.model, text, done, calls)
    items = await generation.primed(generation.stream(state.manager, req.model, engine_request, None))

    async def events() -> AsyncIterator[str]:
        start: dict[str, Any] = {
            "id": f"msg_{request_id}",
            "type": "message",
            "role": "assistant",
            "model": req.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        yield _event("message_start", {"message": start})
        yield _event("ping", {})
        hold = tools_api.Holdback(tools, choice)
        text_open = False

        def open_text() -> str:
            return _event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})

        def text_delta(text: str) -> str:
            return _event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": text}})

        async for item in items:
            if isinstance(item, Done):
                text, calls = hold.finish()
                if calls:
                    for k, call in enumerate(calls):
                        block = {**p.tool_use(call), "input": {}}
                        yield _event("content_block_start", {"index": k, "content_block": block})
                        delta = {"type": "input_json_delta", "partial_json": json.dumps(call.arguments)}
                        yield _event("content_block_delta", {"index": k, "delta": delta})
                        yield _event("content_block_stop", {"index": k})
                    reason, sequence = "tool_use", None
                else:
                    if not text_open:
                        yield open_text()
                    if text:
                        yield text_delta(text)
                    yield _event("content_block_stop", {"index": 0})
                    reason, sequence = p.stop_details(item)
                yield _event(
                    "message_delta",
                    {"delta": {"stop_reason": reason, "stop_sequence": sequence}, "usage": p.usage(item)},
                )
                yield _event("message_stop", {})
            elif text := hold.feed(item.text):
                if not text_open:
                    text_open = True
                    yield open_text()
                yield text_delta(text)

    return guard_stream(events(), _error)
