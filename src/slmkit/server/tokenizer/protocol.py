"""The tokenizer endpoints' wire types and limits."""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, model_validator

from slmkit.server.openai.protocol import ChatMessage
from slmkit.server.wire import RequestBody

MAX_CHARS = 1 << 20  # longest text /tokenize accepts
MAX_TOKENS = 1 << 17  # most ids /detokenize accepts


class TokenizeRequest(RequestBody):
    """vLLM's two forms: ``prompt`` (text), or ``messages`` (a chat, rendered with the model's
    template first, as the chat endpoint would: what routers hash to place a conversation)."""

    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, min_length=1)
    prompt: str | None = None
    add_special_tokens: bool = True  # the prompt form: BOS when the model wants one
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    add_generation_prompt: bool = True  # the chat form: end with the assistant's turn opening
    tools: list[dict[str, Any]] | None = None
    chat_template_kwargs: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> TokenizeRequest:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("prompt or messages: give exactly one")
        return self


class DetokenizeRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    model: str | None = Field(default=None, min_length=1)
    tokens: list[int]
