"""The tokenizer endpoints' wire types and limits."""

from __future__ import annotations

from pydantic import ConfigDict, Field

from slmkit.server.wire import RequestBody

MAX_CHARS = 1 << 20  # longest text /tokenize accepts
MAX_TOKENS = 1 << 17  # most ids /detokenize accepts


class TokenizeRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, min_length=1)
    prompt: str
    add_special_tokens: bool = True


class DetokenizeRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, min_length=1)
    tokens: list[int]
