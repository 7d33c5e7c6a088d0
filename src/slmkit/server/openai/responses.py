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

from slmkit.engine import generation, parameters, reasoning
from slmkit.engine.generation import Answer, AnswerEvent, Done, Text, Thinking, ToolCalls
from slmkit.engine.schema import check_schema, json_object_schema
from slmkit.engine.types import EngineRequest, SamplingParams
from slmkit.errors import InvalidRequest
from slmkit.server import answers
from slmkit.server.errors import guard_stream, openai_body, public_message, status_for
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
    reasoning: dict[str, Any] | None = None  # {"effort": "none" | "minimal" | "low" | "medium" | "high"}

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

    def think(self) -> bool | str | None:
        """``reasoning.effort``: none/minimal turn thinking off, low/medium/high are levels."""
        effort = (self.reasoning or {}).get("effort")
        if effort is None:
            return None
        if effort in ("none", "minimal"):
            return False
        return reasoning.check_think(effort, "reasoning.effort")

    def engine_request(self, request_id: str) -> EngineRequest:
        values = {"temperature": self.temperature, "top_p": self.top_p, "num_predict": self.max_output_tokens}
        options = parameters.request_options(values, "")
        return EngineRequest(
            request_id,
            SamplingParams(json_schema=self.output_schema()),
            messages=tuple(self.messages()),
            options=tuple(options.items()),
            think=self.think(),
        )


def _response(
    req: ResponsesRequest,
    rid: str,
    created: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    done: Done | None,
) -> dict[str, Any]:
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
        "reasoning": req.reasoning,
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


def _reasoning(rid: str, text: str) -> dict[str, Any]:
    """A reasoning item: the model's <think> block, as reasoning_text content."""
    return {
        "type": "reasoning",
        "id": f"rs_{rid}",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def _status(done: Done) -> str:
    return "incomplete" if done.finish_reason == "length" else "completed"


def to_response(req: ResponsesRequest, rid: str, created: int, answer: Answer) -> dict[str, Any]:
    """A whole answer as a Response: a reasoning item when the model thought, then the message."""
    status = _status(answer.done)
    output = [_reasoning(rid, answer.thinking)] if answer.thinking else []
    output.append(_message(rid, answer.text, "completed" if status == "completed" else "incomplete"))
    return _response(req, rid, created, answer.done.model, status, output, answer.done)


class ResponseStream:
    """The Responses API's streaming events for one answer, from its answer events: a
    reasoning item (while the model thinks), then the message item. Pure."""

    def __init__(self, req: ResponsesRequest, rid: str, created: int) -> None:
        self.req, self.rid, self.created = req, rid, created
        self._counter = itertools.count()
        self._items: list[dict[str, Any]] = []  # finished output items
        self._thought: list[str] | None = None  # the open reasoning item's text
        self._text: list[str] | None = None  # the open message's text

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        return {"type": kind, "sequence_number": next(self._counter), **data}

    def start(self) -> list[dict[str, Any]]:
        pending = _response(self.req, self.rid, self.created, self.req.model, "in_progress", [], None)
        return [
            self._event("response.created", response=pending),
            self._event("response.in_progress", response=pending),
        ]

    def _ids(self, item_id: str) -> dict[str, Any]:
        return {"item_id": item_id, "output_index": len(self._items), "content_index": 0}

    def _close_reasoning(self) -> list[dict[str, Any]]:
        if self._thought is None:
            return []
        text, self._thought = "".join(self._thought).strip(), None
        item = _reasoning(self.rid, text)
        out = [
            self._event("response.reasoning_text.done", **self._ids(f"rs_{self.rid}"), text=text),
            self._event("response.output_item.done", output_index=len(self._items), item=item),
        ]
        self._items.append(item)
        return out

    def _open_message(self) -> list[dict[str, Any]]:
        if self._text is not None:
            return []
        out = self._close_reasoning()
        self._text = []
        item = {**_message(self.rid, "", "in_progress"), "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        out.append(self._event("response.output_item.added", output_index=len(self._items), item=item))
        out.append(self._event("response.content_part.added", **self._ids(f"msg_{self.rid}"), part=part))
        return out

    def event(self, event: AnswerEvent) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if isinstance(event, Thinking):
            if self._thought is None and self._text is None:
                self._thought = []
                item = {**_reasoning(self.rid, ""), "content": []}
                out.append(
                    self._event("response.output_item.added", output_index=len(self._items), item=item)
                )
            if self._thought is not None:
                self._thought.append(event.text)
                ids = self._ids(f"rs_{self.rid}")
                out.append(self._event("response.reasoning_text.delta", **ids, delta=event.text))
        elif isinstance(event, Text | ToolCalls):  # no tools on this route: calls never come
            if isinstance(event, Text) and event.text:
                out += self._open_message()
                assert self._text is not None
                self._text.append(event.text)
                ids = self._ids(f"msg_{self.rid}")
                out.append(self._event("response.output_text.delta", **ids, delta=event.text, logprobs=[]))
        else:
            out += self._open_message()
            assert self._text is not None
            text, status = "".join(self._text), _status(event)
            ids = self._ids(f"msg_{self.rid}")
            part = {"type": "output_text", "text": text, "annotations": []}
            message = _message(self.rid, text, status)
            out.append(self._event("response.output_text.done", **ids, text=text, logprobs=[]))
            out.append(self._event("response.content_part.done", **ids, part=part))
            out.append(self._event("response.output_item.done", output_index=len(self._items), item=message))
            self._items.append(message)
            final = _response(self.req, self.rid, self.created, event.model, status, self._items, event)
            kind = "response.completed" if status == "completed" else "response.incomplete"
            out.append(self._event(kind, response=final))
        return out

    def error(self, exc: Exception) -> dict[str, Any]:
        body = openai_body(public_message(exc), status_for(exc))["error"]
        return self._event("error", code=body["type"], message=body["message"], param=None)


def _sse(data: dict[str, Any]) -> str:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {data['type']}\ndata: {body}\n\n"


async def create(state: ServerState, req: ResponsesRequest) -> dict[str, Any] | AsyncIterator[str]:
    rid = generation.new_request_id()
    created = int(time.time())
    engine_request = req.engine_request(rid)
    if not req.stream:
        return to_response(req, rid, created, await answers.complete(state, req.model, engine_request))
    events = await answers.started(state, req.model, engine_request)
    out = ResponseStream(req, rid, created)

    async def lines() -> AsyncIterator[str]:
        for data in out.start():
            yield _sse(data)
        async for event in events:
            for data in out.event(event):
                yield _sse(data)

    return guard_stream(lines(), lambda exc: _sse(out.error(exc)))
