"""Anthropic Messages wire types (`POST /v1/messages`) and the pure conversions to and from
the engine: text, and tool use through the shared tool-calling path (server/tools.py).
Images and documents are refused with a 400 that names them, never silently dropped."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmkit.engine.types import EngineRequest, SamplingParams
from slmkit.errors import InvalidRequest
from slmkit.server import tools as tools_api
from slmkit.server.generation import Done

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


class MessagesRequest(BaseModel):
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

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> MessagesRequest:
        for name, value in (self.model_extra or {}).items():
            if name in IGNORED_FIELDS or value in (None, [], {}):
                continue
            raise ValueError(f"{name}: this field is not supported yet")
        return self

    def tool_setup(self) -> tuple[list[tools_api.Tool], tools_api.Choice]:
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
            choice = tools_api.Choice("auto" if found else "none", parallel=parallel)
        elif kind == "none":
            choice = tools_api.Choice("none")
        elif kind == "any":
            choice = tools_api.Choice("required", parallel=parallel)
        elif kind == "tool":
            choice = tools_api.Choice("required", name=tc.get("name"), parallel=False)
        else:
            raise InvalidRequest("tool_choice.type: auto, any, tool or none")
        tools_api.check_tools(found, choice)
        return found, choice


def _turns(m: Message, i: int, used: dict[str, str]) -> list[dict[str, Any]]:
    """One message's turns: its text, its tool calls (assistant) and tool results (user)."""
    if isinstance(m.content, str):
        return [{"role": m.role, "content": m.content}]
    text, calls, results = [], [], []
    for j, block in enumerate(m.content):
        extra = block.model_extra or {}
        if block.type == "text" and block.text is not None:
            text.append(block.text)
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


def from_anthropic(req: MessagesRequest, request_id: str, native_tools: bool = False) -> EngineRequest:
    tools, choice = req.tool_setup()
    messages: list[dict[str, Any]] = []
    if req.system:
        messages.append({"role": "system", "content": _text(req.system, "system")})
    used: dict[str, str] = {}  # tool_use id -> tool name
    for i, m in enumerate(req.messages):
        messages += _turns(m, i, used)
    if not any(m["role"] != "system" for m in messages):
        raise InvalidRequest("messages: no content to answer")
    if messages[-1]["role"] == "assistant":  # Anthropic's "prefill": the answer continues that text
        raise InvalidRequest("messages: a final assistant message (prefill) is not supported yet")
    sampling = SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        min_p=0.0,
        repeat_penalty=1.0,
        stop=tuple(s for s in req.stop_sequences or () if s),
        max_tokens=req.max_tokens,
        json_schema=tools_api.call_schema(tools, choice) if choice.mode == "required" else None,
    )
    messages = tools_api.with_tools(messages, tools, choice, native_tools)
    extra = tools_api.template_vars(tools, choice, native_tools)
    return EngineRequest(request_id, sampling, messages=tuple(messages), template_vars=extra)


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


def tool_use(call: tools_api.Call) -> dict[str, Any]:
    return {
        "type": "tool_use",
        "id": "toolu_" + call.id.removeprefix("call_"),
        "name": call.name,
        "input": call.arguments,
    }


def message(
    request_id: str, model: str, text: str, done: Done, calls: list[tools_api.Call] | None = None
) -> dict[str, Any]:
    reason, sequence = stop_details(done)
    content = [tool_use(c) for c in calls] if calls else [{"type": "text", "text": text}]
    return {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if calls else reason,
        "stop_sequence": None if calls else sequence,
        "usage": usage(done),
    }


def error_body(message: str, status: int) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
             503: "overloaded_error", 529: "overloaded_error"}  # fmt: skip
    return {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}}
