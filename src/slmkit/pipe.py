"""Data that crosses the engine boundary: requests in, events out. All picklable, since
they travel between the API process and a worker process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FinishReason = Literal["stop", "length", "cancelled"]
ToolMode = Literal["auto", "none", "required"]


@dataclass(frozen=True)
class SamplingParams:
    """How to pick each next token. Defaults are llama.cpp's; each API adapter sets its own."""

    temperature: float = 0.8  # 0 = greedy
    top_k: int = 40  # 0 = off
    top_p: float = 0.95  # 1 = off
    min_p: float = 0.05  # 0 = off
    repeat_penalty: float = 1.1  # 1 = off
    repeat_last_n: int = 64  # tokens the penalties look back over
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None  # None = a fresh random seed per request
    stop: tuple[str, ...] = ()  # generation ends before any of these strings
    max_tokens: int | None = None  # None = until the context window is full
    ignore_eos: bool = False  # keep going past end-of-generation tokens (benchmarks)
    logprobs: int | None = None  # None: off; N: each token's log probability and the N likeliest
    # None: off; N: each prompt token's log probability and the N likeliest there (echo scoring)
    prompt_logprobs: int | None = None
    json_schema: str | None = None  # the output must follow this JSON schema (answer/schema.py)
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)
    # A request's own context window (Ollama's num_ctx): prompt and answer must fit in it.
    # Capped by the loaded model's window per sequence; never a reload.
    context_window: int | None = None


@dataclass(frozen=True)
class Tool:
    """A function the model may call (every dialect's tool definitions become these)."""

    name: str
    description: str
    parameters: dict[str, Any]  # a JSON schema for the arguments


@dataclass(frozen=True)
class Choice:
    """How tools may be used in one answer (tool_choice)."""

    mode: ToolMode
    name: str | None = None  # a named tool: the call must be to it
    parallel: bool = True  # more than one call per answer allowed


@dataclass(frozen=True)
class Call:
    """One tool call found in an answer."""

    id: str
    name: str
    arguments: dict[str, Any]


MEDIA_MARKER = "<__media__>"  # where an image goes in a rendered prompt (libmtmd's default)


@dataclass(frozen=True)
class Image:
    """An image of a request: the file as sent (``data``, base64, from a dialect), then
    checked and decoded by answer/media.py (``rgb``, 3 bytes a pixel) before a worker sees it."""

    data: bytes = b""  # the file as base64 text, until decoded
    field: str = "images"  # where the request put it, for error messages
    width: int = 0
    height: int = 0
    rgb: bytes = b""
    digest: str = ""  # sha256 of the file: the image's identity for the prefix cache


@dataclass(frozen=True)
class EngineRequest:
    """One generation. Exactly one of ``prompt`` and ``messages`` is set. ``sampling``'s
    table parameters (answer/parameters.py) are filled in by resolve from ``options``, the
    model's PARAMETERs and the defaults; the dialect sets only its request-only fields
    (json_schema, logprobs, logit_bias, ignore_eos)."""

    request_id: str
    sampling: SamplingParams
    prompt: str | None = None  # raw text, tokenized as is (special tokens parsed)
    messages: tuple[dict[str, Any], ...] | None = None  # rendered with the chat template
    add_generation_prompt: bool = True
    suffix: str | None = None  # fill in the middle: text after the gap (with ``prompt``)
    context: tuple[int, ...] = ()  # tokens put before the prompt (Ollama's ``context``)
    return_context: bool = False  # report the prompt's and answer's tokens (GenerationStats.context)
    template_vars: tuple[tuple[str, Any], ...] = ()  # extra chat-template variables (set by resolve)
    # What the dialect asked for, before the model's profile is applied (answer/profile.py's
    # resolve). Workers only ever see resolved requests: options merged into ``sampling``,
    # think and tools turned into template variables and messages.
    options: tuple[tuple[str, Any], ...] = ()  # this request's own parameter values, by table name
    think: bool | str | None = None  # reasoning: on, off, an effort level, or the model's default
    think_budget: int | None = None  # most reasoning tokens; then the close marker is forced
    track_thinking: bool = False  # count reasoning tokens (set by resolve for models that think)
    tools: tuple[Tool, ...] = ()
    tool_choice: Choice | None = None  # None: no tools
    priority: int = 0  # 0 = interactive; 1 = background (batch jobs yield to interactive work)
    # Its tokens go to a reader as they come (a stream); False: collected into one answer, so
    # an even pace between its tokens buys nothing (the scheduler reads others' prompts then)
    streamed: bool = True
    images: tuple[Image, ...] = ()  # in prompt order; each placed by a MEDIA_MARKER in the text
    # A prompt over the context window: None refuses it (400); 0 drops its oldest tokens (after
    # the system prompt) until it fits with room to answer; k > 0 keeps at most k prompt tokens.
    # What was dropped is reported (GenerationStats.dropped_tokens): never silent.
    truncate: int | None = None


@dataclass(frozen=True)
class GenerationStats:
    """Counts and timings of one finished generation."""

    prompt_tokens: int  # tokens in the prompt
    completion_tokens: int  # tokens generated
    prompt_eval_seconds: float  # prompt processing, including the first token's sampling
    eval_seconds: float  # from the first token to the last
    cached_tokens: int = 0  # prompt tokens reused from a slot's KV cache
    queue_seconds: float = 0.0  # from arrival in the worker to the first scheduled step
    stop_sequence: str | None = None  # the stop string that ended generation, if one did
    context: tuple[int, ...] = ()  # the prompt's tokens then the generated ones (Ollama's ``context``)
    draft_tokens: int = 0  # tokens drafted by speculative decoding (SLM_DRAFT_TOKENS)
    accepted_tokens: int = 0  # of those, confirmed by the model
    reasoning_tokens: int = 0  # of the completion, tokens inside the <think> block
    dropped_tokens: int = 0  # prompt tokens cut to fit (only when the request asked: truncate)
    # with SamplingParams.prompt_logprobs: one entry per prompt token; the first has no
    # logprob (nothing comes before it: 0.0 and no alternatives here, null on the wire)
    prompt_logprobs: tuple[TokenLogprob, ...] = ()


@dataclass(frozen=True)
class TokenLogprob:
    """One token and its log probability under the model (natural log, before sampling)."""

    token: str  # its text (invalid UTF-8 bytes replaced)
    bytes: tuple[int, ...]  # its raw bytes
    logprob: float
    top: tuple[TokenLogprob, ...] = ()  # the likeliest tokens at this position, best first


@dataclass(frozen=True)
class TextDelta:
    """New text for the caller (may be empty when a token is held back for stop matching)."""

    text: str
    tokens: int  # how many tokens this delta covers
    logprobs: tuple[TokenLogprob, ...] = ()  # one per generated token, when asked for


@dataclass(frozen=True)
class Finished:
    reason: FinishReason
    stats: GenerationStats


@dataclass(frozen=True)
class Failed:
    """The request ended with an error; ``error`` is one of slmkit.errors."""

    error: Exception


Event = TextDelta | Finished | Failed


@dataclass(frozen=True)
class LoadSpec:
    """How to load a model; picklable, sent to the worker process."""

    model_path: str
    n_ctx: int = 4096  # context per sequence; capped at the model's trained context
    n_parallel: int = 1  # sequences decoded together
    n_threads: int = 0  # 0 = automatic: the CPU budget, adapted to other processes' load
    n_batch: int = 512  # most tokens per step
    adapters: tuple[str, ...] = ()  # LoRA adapter GGUFs applied with scale 1
    flash_attention: str = "auto"  # "auto", "on" or "off" (SLM_FLASH_ATTENTION)
    kv_cache_type: str = "f16"  # "f16", "q8_0" or "q4_0" (SLM_KV_CACHE_TYPE)
    draft_tokens: int = 0  # prompt-lookup draft tokens per step (SLM_DRAFT_TOKENS; 0 = off)
    kv_unified: bool = False  # one KV pool for all slots (SLM_KV_UNIFIED)
    kv_pool: int = 0  # KV cells shared by all slots (SLM_KV_POOL); 0 = n_ctx x n_parallel
    swa_full: bool = False  # full-size sliding-window caches (SLM_SWA_FULL); else the window only
    backend: str = "llama"  # "llama" (a GGUF file) or "onnx" (an ONNX Runtime GenAI folder)
    # Facts the model's format read (formats/) for backends that cannot: llama.cpp finds
    # both in the GGUF itself.
    fim: tuple[int, int, int] | None = None  # fill-in-the-middle ids (prefix, suffix, middle)
    embedding_output: str = ""  # the graph output embeddings pool ("" = none)
    rerank: bool = False  # a cross-encoder: score (query, document) pairs with rank pooling
    projector: str = ""  # the vision projector GGUF ("" = the model takes no images)
    projector_type: str = ""  # its clip.projector_type (e.g. idefics3)


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model reports about itself to the API process."""

    n_ctx: int  # context window of one sequence (one slot)
    n_ctx_train: int  # context the model was trained with
    n_embd: int  # model width (embedding length)
    n_vocab: int
    n_parallel: int = 1  # sequences decoded together (KV slots)
    kv_cells: int = 0  # KV cells all slots share when fewer than n_parallel x n_ctx (SLM_KV_POOL)
    n_batch: int = 512  # most tokens in one step's batch
    n_threads: int = 0  # CPU threads decoding now (engine/threads.py may change it)
    memory_bytes: int = 0  # resident memory of the worker after load
    extra: dict[str, Any] = field(default_factory=dict)
