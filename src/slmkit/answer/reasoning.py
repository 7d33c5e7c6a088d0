"""Reasoning ("thinking"), shared by every API dialect: pure functions.

A request's think setting reaches the chat template as ``enable_thinking`` (the variable
Qwen3-style templates read) and, for an effort level, ``reasoning_effort`` (answer/profile.py).
It is honoured only when the model's template mentions thinking; asking a model without it
to think is a 400. The answer's leading ``<think>...</think>`` block is split off by the
answer pipeline (answer/generation.py) and each dialect returns it its own way: Ollama's
``thinking``, OpenAI's ``reasoning_content`` (vLLM's and llama.cpp's field), Anthropic's
``thinking`` blocks, the Responses API's ``reasoning`` items.
"""

from __future__ import annotations

from slmkit.errors import InvalidRequest

OPEN, CLOSE = "<think>", "</think>"
EFFORTS = {"low", "medium", "high"}
# the reasoning tokens an effort level allows (engine/thinking.py ends the thinking there);
# high, like no level, is bounded only by max_tokens
EFFORT_BUDGETS = {"low": 512, "medium": 2048}


def budget(think: bool | str | None, explicit: int | None) -> int | None:
    """The most reasoning tokens: the request's own budget, else its effort level's."""
    if explicit is not None:
        return explicit
    return EFFORT_BUDGETS.get(think) if isinstance(think, str) else None


def supports_thinking(template: str) -> bool:
    """Whether a chat template can switch thinking on or off (Qwen3, DeepSeek-R1 style)."""
    return "enable_thinking" in template or OPEN in template or "reasoning_effort" in template


def check_think(value: bool | str | None, field: str) -> bool | str | None:
    """A dialect's think setting, checked: None (the model's default), a bool, or an effort."""
    if isinstance(value, str) and value not in EFFORTS:
        raise InvalidRequest(f"{field}: true, false, or one of {sorted(EFFORTS)}")
    return value


def from_effort(effort: str | None, field: str) -> bool | str | None:
    """OpenAI's reasoning effort as a think setting: none/minimal turn thinking off,
    low/medium/high are levels, absent is the model's default."""
    if effort is None:
        return None
    if effort in ("none", "minimal"):
        return False
    return check_think(effort, field)


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
        self._state = "start"  # start -> thinking -> after (blank lines dropped) -> answer
        self._buffer = ""

    def feed(self, text: str) -> tuple[str, str]:
        if self._state == "answer":
            return "", text
        if self._state == "after":  # the blank lines between </think> and the answer go
            text = text.lstrip()
            if text:
                self._state = "answer"
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
            self._buffer = ""
            rest = rest.lstrip()
            self._state = "answer" if rest else "after"
            return inner, rest
        keep = next((n for n in range(len(CLOSE) - 1, 0, -1) if self._buffer.endswith(CLOSE[:n])), 0)
        out = self._buffer[: len(self._buffer) - keep]
        self._buffer = self._buffer[len(self._buffer) - keep :]
        return out, ""

    def flush(self) -> tuple[str, str]:
        out, self._buffer = self._buffer, ""
        return (out, "") if self._state == "thinking" else ("", out)
