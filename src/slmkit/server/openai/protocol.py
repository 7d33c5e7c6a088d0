"""OpenAI wire types and the pure conversions to and from the engine.

Fields we do not support yet are refused with a 400 that names them, never silently
dropped when they would change the answer. Fields that change nothing for us
(``user``, ``metadata``, ``store`` ...) are accepted and ignored.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmkit.answer import media, parameters, reasoning
from slmkit.answer import tools as tools_api
from slmkit.answer.generation import Answer, AnswerEvent, Done, Text, Thinking, ToolCalls, facts
from slmkit.answer.schema import openai_format
from slmkit.errors import InvalidRequest
from slmkit.pipe import MEDIA_MARKER, Call, Choice, EngineRequest, Image, SamplingParams, TokenLogprob, Tool
from slmkit.server.wire import RequestBody

# Accepted and ignored: they do not change what the model generates.
IGNORED_FIELDS = {
    "user",
    "metadata",
    "store",
    "service_tier",
    "stream_options",
}


# OpenAI field -> the parameter table's name (answer/parameters.py).
OPTION_FIELDS = {
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "repetition_penalty": "repeat_penalty",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "seed": "seed",
    "stop": "stop",
}


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Sampling(RequestBody):
    """Sampling fields shared by chat and completions, with OpenAI's defaults."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int | None = Field(default=None, ge=1)
    # Extensions that vLLM and llama.cpp's server accept too.
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repetition_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    ignore_eos: bool = False  # vLLM's extension: generate max_tokens whatever the model says
    # vLLM's extension: keep at most this many prompt tokens (-1: as many as fit), dropping the
    # oldest after the system prompt; without it a prompt over the context is refused
    truncate_prompt_tokens: int | None = Field(default=None, ge=-1)

    def truncation(self) -> int | None:
        if self.truncate_prompt_tokens == 0:
            raise InvalidRequest("truncate_prompt_tokens: a positive number of tokens, or -1 (all that fit)")
        return None if self.truncate_prompt_tokens is None else max(0, self.truncate_prompt_tokens)

    response_format: dict[str, Any] | None = None  # text, json_object or json_schema
    logit_bias: dict[str, float] | None = None  # token id -> bias in [-100, 100]

    IGNORED = frozenset(IGNORED_FIELDS)
    HARMLESS = {
        "echo": (False,),
        "best_of": (0, 1),
        "functions": ([],),
        # what vLLM's router (SGLang's fields) adds to every request, at values that are
        # slmkit's behaviour: stop strings trimmed, special tokens skipped, the reasoning
        # split off and streamed, no hidden states, no continued final message
        "no_stop_trim": (False,),
        "skip_special_tokens": (True,),
        "separate_reasoning": (True,),
        "stream_reasoning": (True,),
        "include_reasoning": (True,),
        "return_hidden_states": (False,),
        "continue_final_message": (False,),
    }

    @model_validator(mode="after")
    def _check_choices_and_bias(self) -> _Sampling:
        if self.n is not None and self.n > 8:
            raise ValueError("n: at most 8 choices per request")
        for key, bias in (self.logit_bias or {}).items():
            if not key.isdigit() or not -100 <= bias <= 100:
                raise ValueError(f"logit_bias: {key!r}: keys are token ids, values between -100 and 100")
        return self

    def options(self, max_tokens: int | None) -> tuple[tuple[str, Any], ...]:
        """The parameters this request sets (unset ones come from the model or the defaults)."""
        values: dict[str, Any] = {name: getattr(self, f) for f, name in OPTION_FIELDS.items()}
        values["num_predict"] = max_tokens
        return tuple(parameters.request_options(values, "").items())

    def sampling(self) -> SamplingParams:
        """The request-only sampling fields (the table's come from options)."""
        return SamplingParams(
            ignore_eos=self.ignore_eos,
            json_schema=self.output_schema(),
            logprobs=self.logprob_count(),
            logit_bias=tuple((int(k), float(v)) for k, v in (self.logit_bias or {}).items()),
        )

    def logprob_count(self) -> int | None:
        """How many alternatives to report per token; None when logprobs are off."""
        return None

    def output_schema(self) -> str | None:
        """The JSON schema ``response_format`` asks for, checked (answer/schema.py)."""
        rf = self.response_format
        if rf is None:
            return None
        spec = rf.get("json_schema")
        return openai_format(
            rf.get("type"),
            spec.get("schema") if isinstance(spec, dict) else None,
            type_field="response_format.type",
            schema_field="response_format.json_schema.schema",
        )

    @property
    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None
    image_url: str | dict[str, Any] | None = None  # {"url": "data:image/...;base64,...", "detail"}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn that called tools
    tool_call_id: str | None = None  # a tool turn: which call this is the result of

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.type != "text" or part.text is None:
                raise InvalidRequest(f"messages: content part type '{part.type}' is not supported here")
            parts.append(part.text)
        return "\n".join(parts)  # as text_and_images joins texts

    def text_and_images(self, where: str) -> tuple[str, list[Image]]:
        """The text, with a marker where each ``image_url`` part goes, and those images."""
        if not isinstance(self.content, list):
            return self.text(), []
        text = ""
        after_image = False
        images: list[Image] = []
        for j, part in enumerate(self.content):
            if part.type == "image_url":
                url = part.image_url.get("url") if isinstance(part.image_url, dict) else part.image_url
                if not isinstance(url, str):
                    raise InvalidRequest(f"{where}.content.{j}.image_url.url: must be a data URL string")
                images.append(media.from_url(url, f"{where}.content.{j}.image_url"))
                text, after_image = text + MEDIA_MARKER, True
            elif part.type == "text" and part.text is not None:
                # as llama.cpp's server joins parts: a newline between texts, none by an image
                text += ("\n" if text and not after_image else "") + part.text
                after_image = False
            else:
                raise InvalidRequest(f"{where}.content.{j}: content part type '{part.type}' is not supported")
        return text, images


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: str | None = None  # none, minimal, low, medium, high
    thinking_token_budget: int | None = Field(default=None, ge=0)  # vLLM's: most reasoning tokens
    chat_template_kwargs: dict[str, Any] | None = None  # vLLM's extension: extra template variables

    def think(self) -> bool | str | None:
        """The think setting: chat_template_kwargs.enable_thinking, else reasoning_effort."""
        kwargs = self.chat_template_kwargs or {}
        unknown = set(kwargs) - {"enable_thinking"}
        if unknown:
            raise InvalidRequest(
                f"chat_template_kwargs.{sorted(unknown)[0]}: not supported (enable_thinking is)"
            )
        if "enable_thinking" in kwargs:
            return bool(kwargs["enable_thinking"])
        return reasoning.from_effort(self.reasoning_effort, "reasoning_effort")

    def tool_setup(self) -> tuple[list[Tool], Choice]:
        """The tools and how they may be used (tools.py); no tools -> mode none."""
        return tools_api.function_tools(self.tools, self.tool_choice, self.parallel_tool_calls is not False)

    def logprob_count(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs: needs logprobs: true")
        return (self.top_logprobs or 0) if self.logprobs else None


MAX_PROMPTS = 64  # answers (prompts times n) one completions request may ask for


class CompletionRequest(_Sampling):
    """Legacy completions, vLLM-compatible: one prompt or many, as text or token ids (one
    list, or a list of lists); ``echo`` puts the prompt before the answer, with its tokens'
    logprobs when ``logprobs`` is set; ``max_tokens: 0`` with ``echo`` scores without
    generating."""

    prompt: str | list[str] | list[int] | list[list[int]]
    logprobs: int | None = Field(default=None, ge=0, le=5)  # the legacy API's top-N count
    echo: bool = False
    max_tokens: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check_prompts(self) -> CompletionRequest:
        prompts = self.prompts()
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("prompt: must be a non-empty string or token list, or a list of them")
        if len(prompts) * (self.n or 1) > MAX_PROMPTS:
            raise ValueError(
                f"prompt: {len(prompts)} prompts times n={self.n or 1} is more than the limit of "
                f"{MAX_PROMPTS} answers per request"
            )
        if self.max_tokens == 0 and not self.echo:
            raise ValueError("max_tokens: 0 needs echo (it scores the prompt without generating)")
        if self.echo and self.stream:
            raise ValueError("echo: not supported with stream")
        return self

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: text, or token ids."""
        if isinstance(self.prompt, str):
            return [self.prompt]
        if self.prompt and all(isinstance(t, int) for t in self.prompt):
            return [list(self.prompt)]  # type: ignore[arg-type]
        return list(self.prompt)  # type: ignore[arg-type]

    def logprob_count(self) -> int | None:
        return self.logprobs

    def sampling(self) -> SamplingParams:
        """With ``echo``, the prompt's tokens are scored too (their texts make the echo of a
        token prompt)."""
        base = super().sampling()
        return dataclasses.replace(base, prompt_logprobs=(self.logprobs or 0) if self.echo else None)


class EmbeddingRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


# -- requests -> engine ----------------------------------------------------------------------
def from_openai_chat(req: ChatCompletionRequest, request_id: str) -> EngineRequest:
    tools, choice = req.tool_setup()
    messages: list[dict[str, Any]] = []
    images: list[Image] = []
    called: dict[str, str] = {}  # call id -> tool name, for the results that follow
    for i, m in enumerate(req.messages):
        role = "system" if m.role == "developer" else m.role
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for j, c in enumerate(m.tool_calls):
                fn = c.get("function") or {}
                where = f"messages.{i}.tool_calls.{j}.function.arguments"
                called[str(c.get("id"))] = str(fn.get("name"))
                calls.append((str(fn.get("name")), tools_api.call_arguments(fn.get("arguments"), where)))
            messages.append(tools_api.call_turn(calls))
        elif m.role == "tool":
            name = called.get(str(m.tool_call_id)) or m.name
            messages.append(tools_api.render_result(name, m.tool_call_id, m.text()))
        else:
            text, mine = m.text_and_images(f"messages.{i}")
            if mine and m.role != "user":
                raise InvalidRequest(f"messages.{i}: only user messages carry images")
            images += mine
            messages.append({"role": role, "content": text})
    return EngineRequest(
        request_id,
        req.sampling(),
        images=tuple(images),
        messages=tuple(messages),
        options=req.options(req.max_completion_tokens or req.max_tokens),
        think=(think := req.think()),
        think_budget=reasoning.budget(think, req.thinking_token_budget),
        tools=tuple(tools),
        tool_choice=choice,
        truncate=req.truncation(),
    )


def to_render(request: EngineRequest, tokens: list[int], model: str) -> dict[str, Any]:
    """vLLM's render answer (its GenerateRequest): the prompt's token ids and the sampling the
    request resolved to, under vLLM's names; ``features`` (multimodal) is never set here."""
    s = request.sampling
    sampling = {
        "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k, "min_p": s.min_p,
        "repetition_penalty": s.repeat_penalty, "presence_penalty": s.presence_penalty,
        "frequency_penalty": s.frequency_penalty, "seed": s.seed, "stop": list(s.stop),
        "max_tokens": s.max_tokens, "ignore_eos": s.ignore_eos,
    }  # fmt: skip
    return {
        "request_id": request.request_id,
        "model": model,
        "token_ids": tokens,
        "features": None,
        "sampling_params": sampling,
        "stream": False,
    }


def from_openai_completion(req: CompletionRequest, request_id: str) -> list[EngineRequest]:
    """One engine request per prompt; a token prompt is used as it is (no BOS added)."""
    options = req.options(1 if req.max_tokens == 0 else req.max_tokens)  # 0: one token, dropped
    sampling = req.sampling()
    prompts = req.prompts()
    out = []
    truncate = req.truncation()
    for i, prompt in enumerate(prompts):
        rid = request_id if len(prompts) == 1 else f"{request_id}-p{i}"
        text, tokens = (prompt, ()) if isinstance(prompt, str) else ("", tuple(prompt))
        out.append(
            EngineRequest(rid, sampling, prompt=text, context=tokens, options=options, truncate=truncate)
        )
    return out


def echoed(
    answer: Answer, prompt: str | list[int], scored: tuple[TokenLogprob, ...], generate: bool
) -> Answer:
    """An answer with its prompt before it (``echo``): the prompt's text (a token prompt's is
    its tokens' bytes), and its tokens' logprobs (``scored``) before the answer's, the first
    marked as having none (NaN here, null on the wire); without ``generate`` (max_tokens 0)
    only the prompt."""
    if isinstance(prompt, str):
        text = prompt
    else:
        text = b"".join(bytes(t.bytes) for t in scored).decode("utf-8", errors="replace")
    first = (dataclasses.replace(scored[0], logprob=math.nan, top=()),) if scored else ()
    logprobs = (*first, *scored[1:], *(answer.done.logprobs if generate else ()))
    stats = answer.done.stats if generate else dataclasses.replace(answer.done.stats, completion_tokens=0)
    done = dataclasses.replace(answer.done, logprobs=logprobs, stats=stats)
    return dataclasses.replace(answer, text=text + (answer.text if generate else ""), done=done)


# -- engine -> responses ---------------------------------------------------------------------
def usage(*dones: Done, n: int = 0) -> dict[str, Any]:
    """Usage of one answer, or of ``n`` answers to each prompt, in order (each prompt's tokens
    counted once; ``n`` 0: all the answers are to one prompt)."""
    step = n or len(dones)
    p = sum(d.stats.prompt_tokens for d in dones[::step])
    c = sum(d.stats.completion_tokens for d in dones)
    return {
        "prompt_tokens": p,
        "completion_tokens": c,
        "total_tokens": p + c,
        "prompt_tokens_details": {"cached_tokens": dones[0].stats.cached_tokens},
        "completion_tokens_details": {
            "reasoning_tokens": sum(d.stats.reasoning_tokens for d in dones),
            # speculative decoding's guesses, in OpenAI's predicted-output fields
            "accepted_prediction_tokens": sum(d.stats.accepted_tokens for d in dones),
            "rejected_prediction_tokens": sum(d.stats.draft_tokens - d.stats.accepted_tokens for d in dones),
        },
    }


def _finish(done: Done | None) -> str | None:
    if done is None:
        return None
    if done.tool_calls:
        return "tool_calls"
    return "length" if done.finish_reason == "length" else "stop"


@dataclass
class Responder:
    """Builds one request's OpenAI response objects, for chat or text completions."""

    chat: bool  # chat.completion(.chunk) vs text_completion
    request_id: str
    model: str  # as requested; finished responses carry the resolved name
    include_usage: bool = False  # stream_options.include_usage
    logprobs: bool = False  # the request asked for logprobs
    created: int = field(default_factory=lambda: int(time.time()))

    def _envelope(self, model: str, choices: list[dict[str, Any]], *, chunk: bool) -> dict[str, Any]:
        kind = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {
            "id": f"{'chatcmpl' if self.chat else 'cmpl'}-{self.request_id}",
            "object": kind,
            "created": self.created,
            "model": model,
            "choices": choices,
        }

    def _choice(
        self,
        text: str | None,
        done: Done | None,
        *,
        chunk: bool,
        role: bool = False,
        logprobs: tuple[TokenLogprob, ...] = (),
        index: int = 0,
        calls: tuple[Call, ...] = (),
        reasoning: str = "",
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index}
        if not self.chat:
            choice["text"] = text or ""
        elif chunk:
            choice["delta"] = {"role": "assistant"} if role else {}
            if text is not None:
                choice["delta"]["content"] = text
            if calls:
                choice["delta"]["tool_calls"] = [_call(c) | {"index": k} for k, c in enumerate(calls)]
        else:
            choice["message"] = {"role": "assistant", "content": None if calls else text}
            if calls:
                choice["message"]["tool_calls"] = [_call(c) for c in calls]
        if reasoning and self.chat:  # vLLM's and llama.cpp's field for the <think> block
            (choice["delta"] if chunk else choice["message"])["reasoning_content"] = reasoning
        choice["finish_reason"] = _finish(done)
        choice["logprobs"] = self._logprobs(logprobs) if self.logprobs else None
        return choice

    def _logprobs(self, items: tuple[TokenLogprob, ...]) -> dict[str, Any]:
        if self.chat:  # chat: a list of token objects
            return {"content": [_entry(t) | {"top_logprobs": [_entry(a) for a in t.top]} for t in items]}
        offsets, at = [], 0  # the legacy completions shape; an echoed prompt's first token has none
        for t in items:
            offsets.append(at)
            at += len(t.token)
        return {
            "tokens": [t.token for t in items],
            "token_logprobs": [None if math.isnan(t.logprob) else t.logprob for t in items],
            "top_logprobs": [
                None if math.isnan(t.logprob) else {a.token: a.logprob for a in t.top} for t in items
            ],
            "text_offset": offsets,
        }

    def _chunk(self, model: str, choice: dict[str, Any]) -> dict[str, Any]:
        out = self._envelope(model, [choice], chunk=True)
        if self.include_usage:
            out["usage"] = None
        return out

    def full(self, answers: list[Answer], n: int = 0) -> dict[str, Any]:
        """The whole response: one choice per answer (``n`` per prompt, prompts in order)."""
        choices = [
            self._choice(
                a.text,
                a.done,
                chunk=False,
                logprobs=a.done.logprobs,
                index=i,
                calls=a.calls,
                reasoning=a.thinking,
            )
            for i, a in enumerate(answers)
        ]
        out = self._envelope(answers[0].done.model, choices, chunk=False)
        out["usage"] = usage(*(a.done for a in answers), n=n)
        out["slm"] = facts(answers[0].done)  # what happened (answer/generation.facts)
        return out

    def start(self, n: int = 1) -> list[dict[str, Any]]:
        """Chunks before any text: chat streams announce the assistant role first."""
        if not self.chat:
            return []
        return [
            self._chunk(self.model, self._choice("", None, chunk=True, role=True, index=i)) for i in range(n)
        ]

    def event(self, event: AnswerEvent, index: int = 0) -> list[dict[str, Any]]:
        """The stream chunks for one answer event of choice ``index``."""
        if isinstance(event, Text):
            choice = self._choice(event.text, None, chunk=True, logprobs=event.logprobs, index=index)
        elif isinstance(event, Thinking):
            if not self.chat:
                return []
            choice = self._choice(None, None, chunk=True, index=index, reasoning=event.text)
        elif isinstance(event, ToolCalls):
            choice = self._choice(None, None, chunk=True, index=index, calls=event.calls)
        else:
            text = None if self.chat else ""
            last = self._chunk(event.model, self._choice(text, event, chunk=True, index=index))
            last["slm"] = facts(event)  # each choice's finish chunk says what happened
            return [last]
        return [self._chunk(self.model, choice)]

    def usage_chunk(self, dones: list[Done], n: int = 0) -> list[dict[str, Any]]:
        """The final usage chunk, when asked for (``dones`` in choice order)."""
        if not self.include_usage:
            return []
        final = self._envelope(dones[0].model, [], chunk=True)
        final["usage"] = usage(*dones, n=n)
        return [final]


def _call(c: Call) -> dict[str, Any]:
    return {
        "id": c.id,
        "type": "function",
        "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
    }


def _entry(t: TokenLogprob) -> dict[str, Any]:
    return {"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)}


def encode_embedding(vector: list[float], fmt: str) -> list[float] | str:
    if fmt == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


def to_openai_embeddings(model: str, vectors: list[list[float]], tokens: int, fmt: str) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_embedding(v, fmt)}
            for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def model_card(name: str, created: float) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": int(created), "owned_by": "slmkit"}


_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_busy",
}


def openai_body(
    message: str, status: int, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body (every /v1 route but Anthropic's /v1/messages)."""
    return {
        "error": {
            "message": message,
            "type": _OPENAI_TYPES.get(status, "server_error"),
            "param": param,
            "code": code or ("model_not_found" if status == 404 and "model" in message else None),
        }
    }
