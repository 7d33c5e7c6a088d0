"""Anthropic Messages wire types (`POST /v1/messages`) and the pure conversions to and from
the engine: text, and tool use through the shared tool-calling path (server/tools.py).
Images and documents are refused with a 400 that names them, never silently dropped."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from slmkit.answer import media, parameters
from slmkit.answer import tools as tools_api
from slmkit.answer.generation import Answer, AnswerEvent, Done, Text, Thinking, ToolCalls, facts
from slmkit.errors import InvalidRequest
from slmkit.pipe import MEDIA_MARKER, Call, Choice, EngineRequest, Image, SamplingParams, Tool
from slmkit.server.wire import RequestBody

IGNORED_FIELDS = {"metadata", "service_tier", "container", "mcp_servers"}


class Block(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


def _text(content: str | list[Block], where: str) -> str:
    if isinstance(content, str):
        return content
    parts = []
    for block in content:
        if block.type != "text" or block.text is None:
            raise InvalidRequest(f"{where}: content block type '{block.type}' is not supported yet")
        parts.append(block.text)
    return "".join(parts)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["user", "assistant"]
    content: str | list[Block]


class MessagesRequest(RequestBody):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    messages: list[Message] = Field(min_length=1)
    max_tokens: int = Field(ge=1)  # required, as in Anthropic's API
    system: str | list[Block] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    stream: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None  # {"type": "auto" | "any" | "tool" | "none", "name"}
    thinking: dict[str, Any] | None = None  # {"type": "enabled", "budget_tokens": N} or {"type": "disabled"}

    IGNORED = frozenset(IGNORED_FIELDS)
    UNSET = (None, [], {})

    def think(self) -> bool | None:
        """``thinking``: enabled (with ``budget_tokens``, the most reasoning tokens) or disabled."""
        if self.thinking is None:
            return None
        kind = self.thinking.get("type")
        if kind not in ("enabled", "disabled"):
            raise InvalidRequest("thinking.type: enabled or disabled")
        return bool(kind == "enabled")

    def think_budget(self) -> int | None:
        budget = (self.thinking or {}).get("budget_tokens")
        if budget is None or self.think() is not True:
            return None
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise InvalidRequest("thinking.budget_tokens: a number of tokens, 0 or more")
        return budget

    def tool_setup(self) -> tuple[list[Tool], Choice]:
        found = []
        for i, spec in enumerate(self.tools or []):
            if not isinstance(spec, dict) or spec.get("type") not in (None, "custom"):
                raise InvalidRequest(f"tools.{i}: only custom (client) tools are supported")
            found.append(
                tools_api.tool(
                    spec.get("name"), spec.get("description"), spec.get("input_schema"), f"tools.{i}"
                )
            )
        tc = self.tool_choice or {"type": "auto"}
        parallel = not tc.get("disable_parallel_tool_use", False)
        kind = tc.get("type")
        if kind == "auto":
            choice = Choice("auto" if found else "none", parallel=parallel)
        elif kind == "none":
            choice = Choice("none")
        elif kind == "any":
            choice = Choice("required", parallel=parallel)
        elif kind == "tool":
            choice = Choice("required", name=tc.get("name"), parallel=False)
        else:
            raise InvalidRequest("tool_choice.type: auto, any, tool or none")
        tools_api.check_tools(found, choice)
        return found, choice


class CountTokensRequest(MessagesRequest):
    """``POST /v1/messages/count_tokens``: a Messages request without ``max_tokens``."""

    max_tokens: int = Field(default=1, ge=1)  # nothing is generated


def _turns(m: Message, i: int, used: dict[str, str], images: list[Image]) -> list[dict[str, Any]]:
    """One message's turns: its text (with its images' places), its tool calls (assistant)
    and tool results (user)."""
    if isinstance(m.content, str):
        return [{"role": m.role, "content": m.content}]
    text, calls, results = [], [], []
    for j, block in enumerate(m.content):
        extra = block.model_extra or {}
        if block.type == "text" and block.text is not None:
            text.append(block.text)
        elif block.type == "image" and m.role == "user":
            images.append(_image(extra.get("source"), f"messages.{i}.content.{j}.source"))
            text.append(MEDIA_MARKER)
        elif block.type == "tool_use" and m.role == "assistant":
            used[str(extra.get("id"))] = str(extra.get("name"))
            calls.append((str(extra.get("name")), extra.get("input") or {}))
        elif block.type == "tool_result" and m.role == "user":
            content = extra.get("content", "")
            body = (
                content
                if isinstance(content, str)
                else _text([Block.model_validate(c) for c in content], f"messages.{i}.content.{j}.content")
            )
            ref = str(extra.get("tool_use_id"))
            results.append(
                tools_api.render_result(
                    used.get(ref), ref, ("Error: " if extra.get("is_error") else "") + body
                )
            )
        else:
            raise InvalidRequest(
                f"messages.{i}.content.{j}: content block type '{block.type}' is not supported yet"
            )
    turns = [{"role": m.role, "content": "".join(text)}] if text else []
    if calls:
        turns.append(tools_api.call_turn(calls))
    return turns + results


def _image(source: Any, where: str) -> Image:
    """An image block's source: base64 data (a URL source is not fetched)."""
    if not isinstance(source, dict) or source.get("type") != "base64":
        raise InvalidRequest(f"{where}: only base64 image sources are accepted (this server fetches no URLs)")
    kind, data = source.get("media_type"), source.get("data")
    if not isinstance(kind, str) or not kind.startswith("image/") or not isinstance(data, str):
        raise InvalidRequest(f"{where}: needs media_type (image/...) and base64 data")
    return media.from_base64(data, f"{where}.data")


def from_anthropic(req: MessagesRequest, request_id: str) -> EngineRequest:
    tools, choice = req.tool_setup()
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": _text(req.system, "system")})
    used: dict[str, str] = {}  # tool_use id -> tool name
    images: list[Image] = []
    for i, m in enumerate(req.messages):
        messages += _turns(m, i, used, images)
    if not any(m["role"] != "system" for m in messages):
        raise InvalidRequest("messages: no content to answer")
    if messages[-1]["role"] == "assistant":  # Anthropic's "prefill": the answer continues that text
        raise InvalidRequest("messages: a final assistant message (prefill) is not supported yet")
    values = {
        "temperature": req.temperature,
        "top_p": req.top_p,
        "top_k": req.top_k,
        "stop": req.stop_sequences,
        "num_predict": req.max_tokens,
    }
    options = parameters.request_options(values, "")
    return EngineRequest(
        request_id,
        SamplingParams(),
        images=tuple(images),
        messages=tuple(messages),
        options=tuple(options.items()),
        think=req.think(),
        think_budget=req.think_budget(),
        tools=tuple(tools),
        tool_choice=choice,
    )


def stop_details(done: Done) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for a finished answer."""
    if done.finish_reason == "length":
        return "max_tokens", None
    if done.stats.stop_sequence is not None:
        return "stop_sequence", done.stats.stop_sequence
    return "end_turn", None


def usage(done: Done) -> dict[str, int]:
    return {
        "input_tokens": done.stats.prompt_tokens,
        "output_tokens": done.stats.completion_tokens,
        "cache_read_input_tokens": done.stats.cached_tokens,
    }


def tool_use(call: Call) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": "toolu_" + call.id.removeprefix("call_"),
        "name": call.name,
        "input": call.arguments,
    }


def _thinking_block(text: str) -> dict[str, Any]:
    return {"type": "thinking", "thinking": text, "signature": ""}  # no signature: nothing to verify


def _ending(done: Done) -> tuple[str, str | None]:
    return ("tool_use", None) if done.tool_calls else stop_details(done)


def message(request_id: str, answer: Answer) -> dict[str, Any]:
    """A whole answer as a Messages API message."""
    done = answer.done
    reason, sequence = _ending(done)
    content = [_thinking_block(answer.thinking)] if answer.thinking else []
    content += (
        [tool_use(c) for c in answer.calls] if answer.calls else [{"type": "text", "text": answer.text}]
    )
    return {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": done.model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(done),
        "slm": facts(done),  # what happened (answer/generation.facts)
    }


class MessageStream:
    """Anthropic's streaming events for one answer, from its answer events: content blocks
    (thinking, text, tool_use) opened, filled and closed in order. Pure."""

    def __init__(self, request_id: str, model: str) -> None:
        self.request_id, self.model = request_id, model
        self._index = -1  # the current content block
        self._open: str | None = None  # its type, while open
        self._any = False  # a block was opened

    def start(self) -> list[tuple[str, dict[str, Any]]]:
        message: dict[str, Any] = {
            "id": f"msg_{self.request_id}",
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [("message_start", {"message": message}), ("ping", {})]

    def _close(self) -> list[tuple[str, dict[str, Any]]]:
        if self._open is None:
            return []
        self._open = None
        return [("content_block_stop", {"index": self._index})]

    def _block(self, kind: str, block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        if self._open == kind:
            return []
        out = self._close()
        self._index += 1
        self._open, self._any = kind, True
        out.append(("content_block_start", {"index": self._index, "content_block": block}))
        return out

    def _delta(self, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return ("content_block_delta", {"index": self._index, "delta": delta})

    def event(self, event: AnswerEvent) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        if isinstance(event, Thinking):
            out += self._block("thinking", _thinking_block(""))
            out.append(self._delta({"type": "thinking_delta", "thinking": event.text}))
        elif isinstance(event, Text):
            if event.text:
                out += self._block("text", {"type": "text", "text": ""})
                out.append(self._delta({"type": "text_delta", "text": event.text}))
        elif isinstance(event, ToolCalls):
            for call in event.calls:
                out += self._close()
                out += self._block("tool_use", {**tool_use(call), "input": {}})
                out.append(
                    self._delta({"type": "input_json_delta", "partial_json": json.dumps(call.arguments)})
                )
            out += self._close()
        else:
            if not self._any:  # an empty answer still has one (empty) text block
                out += self._block("text", {"type": "text", "text": ""})
            out += self._close()
            reason, sequence = _ending(event)
            out.append(
                (
                    "message_delta",
                    {
                        "delta": {"stop_reason": reason, "stop_sequence": sequence},
                        "usage": usage(event),
                        "slm": facts(event),
                    },
                )
            )
            out.append(("message_stop", {}))
        return out


def error_body(
    message: str, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
             503: "overloaded_error", 529: "overloaded_error"}  # fmt: skip
    return {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}}
