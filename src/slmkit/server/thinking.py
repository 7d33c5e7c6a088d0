"""Reasoning ("thinking") passthrough, shared by the API dialects: pure functions.

A request's think setting reaches the chat template as ``enable_thinking`` (the variable
Qwen3-style templates read) and, for an effort level, ``reasoning_effort``. It is honoured
only when the model's template mentions thinking; asking a model without it to think is a
400. The answer's leading ``<think>...</think>`` block is split off and returned apart:
Ollama's ``thinking``, OpenAI's ``reasoning_content`` (vLLM's and llama.cpp's field).
"""

from __future__ import annotations

from typing import Any

from slmkit.errors import InvalidRequest
from slmkit.store import ModelRecord

OPEN, CLOSE = "<think>", "</think>"
EFFORTS = {"low", "medium", "high"}


def template_of(record: ModelRecord) -> str:
    if record.template:
        return record.template
    if record.upstream is not None:
        return ""
    from slmkit.store.gguf_info import read_info

    return read_info(record.model_path).chat_template or ""


def supports_thinking(record: ModelRecord) -> bool:
    text = template_of(record)
    return "enable_thinking" in text or OPEN in text or "reasoning_effort" in text


def template_vars(record: ModelRecord, think: bool | str | None, field: str) -> tuple[tuple[str, Any], ...]:
    """The chat-template variables for a think setting (None: the model's default)."""
    if think is None:
        return ()
    if isinstance(think, str) and think not in EFFORTS:
        raise InvalidRequest(f"{field}: true, false, or one of {sorted(EFFORTS)}")
    wanted = think is not False
    if wanted and not supports_thinking(record):
        raise InvalidRequest(f"{field}: model '{record.name.display}' does not support thinking")
    out: list[tuple[str, Any]] = [("enable_thinking", wanted)]
    if isinstance(think, str):
        out.append(("reasoning_effort", think))
    return tuple(out)


def split(text: str) -> tuple[str, str]:
    """(thinking, answer) of a whole answer."""
    stripped = text.lstrip()
    if not stripped.startswith(OPEN):
        return "", text
    body = stripped[len(OPEN) :]
    inner, found, rest = body.partition(CLOSE)
    return (inner.strip(), rest.lstrip()) if found else (body.strip(), "")


class Splitter:
    """The same split for a stream: feed text pieces, get (thinking, answer) pieces."""

    def __init__(self) -> None:
        self._state = "start"  # start -> thinking -> answer
        self._buffer = ""

    def feed(self, text: str) -> tuple[str, str]:
        if self._state == "answer":
            return "", text
        self._buffer += text
        if self._state == "start":
            head = self._buffer.lstrip()
            if len(head) < len(OPEN) and OPEN.startswith(head):
                return "", ""  # may still become <think>
            if not head.startswith(OPEN):
                self._state = "answer"
                out, self._buffer = self._buffer, ""
                return "", out
            self._state = "thinking"
            self._buffer = head[len(OPEN) :]
        inner, found, rest = self._buffer.partition(CLOSE)
        if found:
            self._state, self._buffer = "answer", ""
            return inner, rest.lstrip()
        keep = next((n for n in range(len(CLOSE) - 1, 0, -1) if self._buffer.endswith(CLOSE[:n])), 0)
        out = self._buffer[: len(self._buffer) - keep]
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return out, ""

    def flush(self) -> tuple[str, str]:
        out, self._buffer = self._buffer, ""
        return (out, "") if self._state == "thinking" else ("", out)
