"""vLLM's tokenizer endpoints, at the root and under /v1: ``POST /tokenize``, ``POST
/detokenize`` and ``GET /tokenizer_info``. lm-evaluation-harness's completions mode uses them
to tokenize on the server (so it needs no local copy of the tokenizer), and routers send the
chat form (``messages``) to learn a conversation's prefix. ``model`` is optional,
as on vLLM (which serves one model): without it, SLM_DEFAULT_MODEL's tokenizer answers.

The model's own worker tokenizes, between generation steps: inputs are bounded so that one
call cannot hold up everyone's decoding.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from slmkit.answer import generation
from slmkit.errors import LimitExceeded
from slmkit.server.openai import protocol as openai
from slmkit.server.state import ServerState
from slmkit.server.tokenizer.protocol import MAX_CHARS, MAX_TOKENS, DetokenizeRequest, TokenizeRequest


def _model(state: ServerState, name: str | None) -> str:
    return name or state.config.default_model


async def tokenize(state: ServerState, req: TokenizeRequest) -> dict[str, Any]:
    if req.messages is not None:
        return await _tokenize_chat(state, req)
    assert req.prompt is not None
    if len(req.prompt) > MAX_CHARS:
        raise LimitExceeded(f"prompt: {len(req.prompt)} characters, more than the limit of {MAX_CHARS}")
    async with state.manager.use(_model(state, req.model)) as (loaded, _):
        tokens = await loaded.worker.tokenize(req.prompt, req.add_special_tokens)
        return _tokens(tokens, loaded.info.n_ctx)


async def _tokenize_chat(state: ServerState, req: TokenizeRequest) -> dict[str, Any]:
    """The chat form: the messages become a chat request, rendered (not run) the way the chat
    endpoint would render them; a prompt longer than the context is refused as it would be."""
    model = _model(state, req.model)
    assert req.messages is not None  # validated as the chat endpoint validates them
    size = sum(len(m.model_dump_json()) for m in req.messages)
    if size > MAX_CHARS:  # the prompt form's bound: the worker renders between decode steps
        raise LimitExceeded(f"messages: {size} characters, more than the limit of {MAX_CHARS}")
    chat = openai.ChatCompletionRequest(
        model=model, messages=req.messages, tools=req.tools, chat_template_kwargs=req.chat_template_kwargs
    )
    request = openai.from_openai_chat(chat, f"tokenize-{generation.new_request_id()}")
    request = dataclasses.replace(request, add_generation_prompt=req.add_generation_prompt)
    _, tokens, n_ctx = await generation.render(state.manager, model, request)
    return _tokens(tokens, n_ctx)


def _tokens(tokens: list[int], n_ctx: int) -> dict[str, Any]:
    return {"count": len(tokens), "max_model_len": n_ctx, "tokens": tokens, "token_strs": None}


async def detokenize(state: ServerState, req: DetokenizeRequest) -> dict[str, Any]:
    if len(req.tokens) > MAX_TOKENS:
        raise LimitExceeded(f"tokens: {len(req.tokens)} token ids, more than the limit of {MAX_TOKENS}")
    async with state.manager.use(_model(state, req.model)) as (loaded, _):
        return {"prompt": await loaded.worker.detokenize(req.tokens)}


async def tokenizer_info(state: ServerState, model: str | None) -> dict[str, Any]:
    async with state.manager.use(_model(state, model)) as (loaded, _):
        extra = loaded.info.extra
        return {
            "model": loaded.name,
            "tokenizer_class": loaded.profile.format.runtime,
            "bos_token": extra.get("bos_token"),
            "eos_token": extra.get("eos_token"),
            "pad_token": None,
            "chat_template": loaded.profile.template,
            "model_max_length": loaded.info.n_ctx,
            "vocab_size": loaded.info.n_vocab,
        }
