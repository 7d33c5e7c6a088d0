"""Anthropic Messages wire types (`POST /v1/messages`) and the pure conversions to and from
the engine. Text content only for now: tool use and images are refused with a 400 that
names them, never silently dropped."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmkit.engine.types import EngineRequest, SamplingParams
from slmkit.errors import InvalidRequest
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

    @model_validator(mode="after")
    def _refuse_unsupported(self) -> MessagesRequest:
        for name, value in (self.model_extra or {}).items():
            if name in IGNORED_FIELDS or value in (None, [], {}):
                continue
            if name == "tool_choice" and isinstance(value, dict) and value.get("type") == "none":
                continue
            raise ValueError(f"{name}: this field is not supported yet")
        return self


def from_anthropic(req: MessagesRequest, request_id: str) -> EngineRequest:
    messages = []
    if req.system:
        messages.append({"role": "system", "content": _text(req.system, "system")})
    for i, m in enumerate(req.messages):
        messages.append({"role": m.role, "content": _text(m.content, f"messages.{i}.content")})
    prefill = messages[-1]["content"] if messages[-1]["role"] == "assistant" else None
    if prefill is not None:  # Anthropic's "prefill": the answer continues that text
        raise InvalidRequest("messages: a final assistant message (prefill) is not supported yet")
    sampling = SamplingParams(
        temperature=1.0 if req.temperature is None else req.temperature,
        top_p=1.0 if req.top_p is None else req.top_p,
        top_k=req.top_k or 0,
        min_p=0.0,
        repeat_penalty=1.0,
        stop=tuple(s for s in req.stop_sequences or () if s),
        max_tokens=req.max_tokens,
    )
    return EngineRequest(request_id, sampling, messages=tuple(messages))


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


def message(request_id: str, model: str, text: str, done: Done) -> dict[str, Any]:
    reason, sequence = stop_details(done)
    return {
        "id": f"msg_{request_id}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(done),
    }


def error_body(message: str, status: int) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
             404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
             503: "overloaded_error", 529: "overloaded_error"}  # fmt: skip
    return {"type": "error", "error": {"type": kinds.get(status, "api_error"), "message": message}}
