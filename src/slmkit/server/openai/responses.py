"""OpenAI's Responses API, stateless (`POST /v1/responses`): ``input`` (a string or message
items) and ``instructions`` in, one assistant message out, as JSON or as the Responses
streaming events. Nothing is stored: ``previous_response_id`` is refused."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmkit.engine.schema import check_schema, json_object_schema
from slmkit.engine.types import EngineRequest, SamplingParams
from slmkit.errors import InvalidRequest
from slmkit.server import generation
from slmkit.server.errors import guard_stream, openai_body, public_message, status_for
from slmkit.server.generation import Done
from slmkit.server.state import ServerState

IGNORED_FIELDS = {
    "store",
    "metadata",
    "user",
    "truncation",
    "service_tier",
    "parallel_tool_calls",
    "safety_identifier",
}
TEXT_PARTS = {"input_text", "output_text", "text"}


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stream: bool = False
    text: dict[str, Any] | None = None  # {"format": {"type": "text" | "json_object" | "json_schema", ...}}

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> ResponsesRequest:
        for name, value in (self.model_extra or {}).items():
            if name in IGNORED_FIELDS or value in (None, [], {}, False):
                continue
            if name == "previous_response_id":
                raise ValueError("previous_response_id: this server is stateless; send the whole input")
            raise ValueError(f"{name}: this field is not supported yet")
        return self

    def messages(self) -> list[dict[str, str]]:
        out = [{"role": "system", "content": self.instructions}] if self.instructions else []
        if isinstance(self.input, str):
            return [*out, {"role": "user", "content": self.input}]
        for i, item in enumerate(self.input):
            kind = item.get("type", "message")
            role = item.get("role")
            if kind != "message" or role not in {"user", "assistant", "system", "developer"}:
                raise InvalidRequest(f"input.{i}: item type {kind!r} is not supported yet")
            content = item.get("content")
            if isinstance(content, list):
                parts = []
                for j, part in enumerate(content):
                    if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
                        kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                        raise InvalidRequest(
                            f"input.{i}.content.{j}: part type {kind!r} is not supported yet"
                        )
                    parts.append(str(part.get("text", "")))
                content = "".join(parts)
            if not isinstance(content, str):
                raise InvalidRequest(f"input.{i}.content: must be a string or a list of text parts")
            out.append({"role": "system" if role == "developer" else role, "content": content})
        if not out:
            raise InvalidRequest("input: must not be empty")
        return out

    def output_schema(self) -> str | None:
        fmt = (self.text or {}).get("format") or {"type": "text"}
        kind = fmt.get("type")
        if kind == "text":
            return None
        if kind == "json_object":
            return json_object_schema()
        if kind == "json_schema" and isinstance(fmt.get("schema"), dict):
            return check_schema(fmt["schema"], "text.format.schema")
        raise InvalidRequest("text.format: type must be text, json_object or json_schema (with a schema)")

    def engine_request(self, request_id: str) -> EngineRequest:
        sampling = SamplingParams(
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            top_k=0,
            min_p=0.0,
            repeat_penalty=1.0,
            max_tokens=self.max_output_tokens,
            json_schema=self.output_schema(),
        )
        return EngineRequest(request_id, sampling, messages=tuple(self.messages()))


def _response(
    req: ResponsesRequest,
    rid: str,
    created: int,
    model: str,
    status: str,
    text: str | None,
    done: Done | None,
) -> dict[str, Any]:
    output = []
    if text is not None:
        output.append(_message(rid, text, "completed" if status == "completed" else "incomplete"))
    out: dict[str, Any] = {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": False,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "tool_choice": "auto",
        "tools": [],
        "text": req.text or {"format": {"type": "text"}},
        "metadata": {},
        "usage": None,
    }
    if done is not None:
        s = done.stats
        out["usage"] = {
            "input_tokens": s.prompt_tokens,
            "input_tokens_details": {"cached_tokens": s.cached_tokens},
            "output_tokens": s.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": s.prompt_tokens + s.completion_tokens,
        }
    return out


def _message(rid: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{rid}",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _status(done: Done) -> str:
    return "incomplete" if done.finish_reason == "length" else "completed"


async def create(state: ServerState, req: ResponsesRequest) -> dict[str, Any] | AsyncIterator[str]:
    rid = generation.new_request_id()
    created = int(time.time())
    engine_request = req.engine_request(rid)
    if not req.stream:
        text, done = await generation.complete(state.manager, req.model, engine_request, None)
        return _response(req, rid, created, done.model, _status(done), text, done)
    items = await generation.primed(generation.stream(state.manager, req.model, engine_request, None))
    counter = itertools.count()

    def event(kind: str, **data: Any) -> str:
        body = json.dumps(
            {"type": kind, "sequence_number": next(counter), **data},
            separators=(",", ":"),
            ensure_ascii=False,
        )
        return f"event: {kind}\ndata: {body}\n\n"

    async def events() -> AsyncIterator[str]:
        yield event(
            "response.created", response=_response(req, rid, created, req.model, "in_progress", None, None)
        )
        yield event(
            "response.in_progress",
            response=_response(req, rid, created, req.model, "in_progress", None, None),
        )
        item = {**_message(rid, "", "in_progress"), "content": []}
        yield event("response.output_item.added", output_index=0, item=item)
        part = {"type": "output_text", "text": "", "annotations": []}
        ids = {"item_id": f"msg_{rid}", "output_index": 0, "content_index": 0}
        yield event("response.content_part.added", **ids, part=part)
        pieces: list[str] = []
        async for chunk in items:
            if isinstance(chunk, Done):
                text = "".join(pieces)
                status = _status(chunk)
                yield event("response.output_text.done", **ids, text=text, logprobs=[])
                yield event("response.content_part.done", **ids, part={**part, "text": text})
                yield event("response.output_item.done", output_index=0, item=_message(rid, text, status))
                final = _response(req, rid, created, chunk.model, status, text, chunk)
                yield event(
                    "response.completed" if status == "completed" else "response.incomplete", response=final
                )
            elif chunk.text:
                pieces.append(chunk.text)
                yield event("response.output_text.delta", **ids, delta=chunk.text, logprobs=[])

    def on_error(exc: Exception) -> str:
        body = openai_body(public_message(exc), status_for(exc))["error"]
        return event("error", code=body["type"], message=body["message"], param=None)

    return guard_stream(events(), on_error)
