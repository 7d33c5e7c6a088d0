"""Ollama wire types and the pure conversions to and from the engine."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmkit.config import parse_duration
from slmkit.engine.schema import check_schema, json_object_schema
from slmkit.engine.types import EngineRequest, SamplingParams, TokenLogprob
from slmkit.errors import InvalidRequest
from slmkit.server import thinking
from slmkit.server import tools as tools_api
from slmkit.server.generation import Done
from slmkit.store import ModelRecord

# Options that map onto sampling, with Ollama's defaults.
SAMPLING_DEFAULTS: dict[str, Any] = {
    "temperature": 0.8,
    "top_k": 40,
    "top_p": 0.9,
    "min_p": 0.0,
    "repeat_penalty": 1.1,
    "repeat_last_n": 64,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "seed": None,
    "stop": [],
    "num_predict": -1,
}
# Runner options that do not change the answer here: accepted and ignored.
IGNORED_OPTIONS = {
    "num_thread",
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "use_mlock",
    "num_batch",
    "low_vram",
    "numa",
    "f16_kv",
    "vocab_only",
    "num_keep",
    "penalize_newline",
    "tool_choice",  # not a sampling option: slmkit's tool-choice extension (ChatRequest.tool_setup)
}
# Options whose neutral value is harmless; any other value is refused for now.
NEUTRAL_OPTIONS: dict[str, Any] = {"typical_p": 1.0, "tfs_z": 1.0, "mirostat": 0}


def _check_options(options: dict[str, Any]) -> None:
    for key, value in options.items():
        if key in SAMPLING_DEFAULTS or key in IGNORED_OPTIONS:
            continue
        if key in NEUTRAL_OPTIONS and value in (None, NEUTRAL_OPTIONS[key]):
            continue
        if key in {"mirostat_tau", "mirostat_eta"}:
            continue
        if key == "num_ctx":
            raise InvalidRequest(
                "options.num_ctx: a per-request context size is not supported yet; set SLM_CONTEXT_LENGTH"
            )
        raise InvalidRequest(f"options.{key}: this option is not supported yet")


def _number(options: dict[str, Any], key: str, kind: type) -> Any:
    value = options[key]
    if value is None:
        return SAMPLING_DEFAULTS[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(f"options.{key}: expected a number")
    if kind is int and value != int(value):
        raise InvalidRequest(f"options.{key}: expected an integer")
    return kind(value)


def sampling_from_options(model_params: dict[str, Any], options: dict[str, Any] | None) -> SamplingParams:
    """Model defaults (params layer) overlaid with request options, Ollama's precedence."""
    request = dict(options or {})
    _check_options(request)
    merged = {
        **SAMPLING_DEFAULTS,
        **{k: v for k, v in model_params.items() if k in SAMPLING_DEFAULTS},
    }
    merged.update({k: v for k, v in request.items() if k in SAMPLING_DEFAULTS})
    floats = (
        "temperature",
        "top_p",
        "min_p",
        "repeat_penalty",
        "presence_penalty",
        "frequency_penalty",
    )
    values = {k: _number(merged, k, float) for k in floats}
    top_k = _number(merged, "top_k", int)
    repeat_last_n = _number(merged, "repeat_last_n", int)
    num_predict = _number(merged, "num_predict", int)
    seed = merged["seed"]
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InvalidRequest("options.seed: expected an integer")
    stop = merged["stop"] or []
    if isinstance(stop, str):
        stop = [stop]
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise InvalidRequest("options.stop: expected a list of strings")
    if values["temperature"] < 0:
        raise InvalidRequest("options.temperature: must be >= 0")
    if not 0 < values["top_p"] <= 1:
        raise InvalidRequest("options.top_p: must be in (0, 1]")
    if not 0 <= values["min_p"] <= 1:
        raise InvalidRequest("options.min_p: must be in [0, 1]")
    if top_k < 0 or repeat_last_n < -1:
        raise InvalidRequest("options.top_k and options.repeat_last_n must not be negative")
    if num_predict == 0 or num_predict < -2:
        raise InvalidRequest("options.num_predict: must be positive, -1 (unbounded) or -2 (fill context)")
    return SamplingParams(
        temperature=values["temperature"],
        top_k=top_k,
        top_p=values["top_p"],
        min_p=values["min_p"],
        repeat_penalty=values["repeat_penalty"],
        repeat_last_n=repeat_last_n if repeat_last_n >= 0 else 0,
        presence_penalty=values["presence_penalty"],
        frequency_penalty=values["frequency_penalty"],
        seed=seed,
        stop=tuple(s for s in stop if s),
        max_tokens=None if num_predict < 0 else num_predict,
    )


class _Base(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = True
    options: dict[str, Any] | None = None
    keep_alive: str | float | int | None = None
    format: Any = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    think: bool | str | None = None  # reasoning: passed to the chat template (thinking.py)

    @model_validator(mode="after")
    def _refuse(self) -> _Base:
        for name, value in (self.model_extra or {}).items():
            if value in (None, False, [], "", {}):
                continue
            raise ValueError(f"{name}: this field is not supported yet")
        return self

    def logprob_count(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs: needs logprobs: true")
        return (self.top_logprobs or 0) if self.logprobs else None

    def output_schema(self) -> str | None:
        """``format``: "json" (any JSON object) or a JSON schema, checked (engine/schema.py)."""
        if self.format in (None, ""):
            return None
        if self.format == "json":
            return json_object_schema()
        if isinstance(self.format, dict):
            return check_schema(self.format, "format")
        raise InvalidRequest('format: must be "json" or a JSON schema object')

    def keep_alive_seconds(self) -> float | None:
        return None if self.keep_alive is None else parse_duration(self.keep_alive)


class GenerateRequest(_Base):
    prompt: str = ""
    system: str | None = None
    raw: bool = False
    suffix: str | None = None  # fill in the middle, with the model's FIM tokens
    context: list[int] | None = Field(default=None, max_length=1_000_000)  # a previous answer's context


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(pattern=r"^(system|user|assistant|tool)$")
    content: str = ""
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn that called tools
    tool_name: str | None = None  # a tool turn: which tool answered

    @model_validator(mode="after")
    def _refuse(self) -> Message:
        for name, value in (self.model_extra or {}).items():
            if value not in (None, [], ""):
                raise ValueError(f"messages.{name}: this field is not supported yet")
        return self


class ChatRequest(_Base):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    # slmkit's extension (Ollama has none): auto (default), none, required, or {"function": {"name"}}
    tool_choice: str | dict[str, Any] | None = None

    def tool_setup(self) -> tuple[list[tools_api.Tool], tools_api.Choice]:
        # tool_choice top-level, or in options for clients that cannot add fields (LangChain's ChatOllama)
        choice = self.tool_choice if self.tool_choice is not None else (self.options or {}).get("tool_choice")
        return tools_api.function_tools(self.tools, choice)


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool = True
    options: dict[str, Any] | None = None
    keep_alive: str | float | int | None = None
    dimensions: int | None = Field(default=None, ge=1)


class LegacyEmbeddingsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: str | float | int | None = None


class ModelRef(BaseModel):
    """``{"model": ...}``; older clients send ``name``."""

    model_config = ConfigDict(extra="ignore")
    model: str | None = None
    name: str | None = None
    verbose: bool = False

    @property
    def ref(self) -> str:
        value = self.model or self.name
        if not value:
            raise InvalidRequest("model: is required")
        return value


class PullRequest(ModelRef):
    insecure: bool = False  # plain http to the registry (local registries, tests)
    stream: bool = True


class CreateRequest(BaseModel):
    """Ollama's JSON form of `create` (what `ollama create` sends after uploading blobs)."""

    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    from_: str | None = Field(default=None, alias="from")
    files: dict[str, str] | None = None  # file name -> digest of an uploaded blob
    adapters: dict[str, str] | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict[str, Any] | None = None
    messages: list[dict[str, str]] | None = None
    license: str | list[str] | None = None
    quantize: str | None = None
    stream: bool = True


class CopyRequest(BaseModel):
    source: str = Field(min_length=1)
    destination: str = Field(min_length=1)


# -- requests -> engine ----------------------------------------------------------------------
def from_ollama_generate(req: GenerateRequest, record: ModelRecord, request_id: str) -> EngineRequest:
    sampling = replace(
        sampling_from_options(record.params, req.options),
        json_schema=req.output_schema(),
        logprobs=req.logprob_count(),
    )
    context = tuple(req.context or ())
    if any(not 0 <= t < 2**31 for t in context):
        raise InvalidRequest("context: token ids must be non-negative integers")
    if req.suffix is not None:  # fill in the middle: the raw prompt, then the gap, then the suffix
        return EngineRequest(request_id, sampling, prompt=req.prompt, suffix=req.suffix, return_context=True)
    if req.raw:
        return EngineRequest(request_id, sampling, prompt=req.prompt, context=context, return_context=True)
    messages = [{"role": "system", "content": req.system}] if req.system else []
    messages.append({"role": "user", "content": req.prompt})
    extra = thinking.template_vars(record, req.think, "think")
    return EngineRequest(
        request_id,
        sampling,
        messages=tuple(messages),
        context=context,
        template_vars=extra,
        return_context=True,
    )


def from_ollama_chat(req: ChatRequest, record: ModelRecord, request_id: str) -> EngineRequest:
    sampling = replace(
        sampling_from_options(record.params, req.options),
        json_schema=req.output_schema(),
        logprobs=req.logprob_count(),
    )
    tools, choice = req.tool_setup()
    native = bool(tools) and tools_api.supports_tools(thinking.template_of(record))
    messages: list[dict[str, Any]] = []
    for i, m in enumerate(req.messages):
        if m.role == "assistant" and m.tool_calls:
            calls = []
            for j, c in enumerate(m.tool_calls):
                fn = c.get("function") or {}
                if not isinstance(fn.get("arguments", {}), dict):
                    raise InvalidRequest(f"messages.{i}.tool_calls.{j}.function.arguments: must be an object")
                calls.append((str(fn.get("name")), fn.get("arguments") or {}))
            messages.append(tools_api.call_turn(calls))
        elif m.role == "tool":
            messages.append(tools_api.render_result(m.tool_name, None, m.content))
        else:
            messages.append({"role": m.role, "content": m.content})
    if choice.mode == "required":
        if sampling.json_schema is not None:
            raise InvalidRequest("format: cannot be combined with a required tool call")
        sampling = replace(sampling, json_schema=tools_api.call_schema(tools, choice))
    messages = tools_api.with_tools(messages, tools, choice, native)
    extra = thinking.template_vars(record, req.think, "think") + tools_api.template_vars(
        tools, choice, native
    )
    return EngineRequest(request_id, sampling, messages=tuple(messages), template_vars=extra)


# -- engine -> responses ---------------------------------------------------------------------
def timestamp(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def done_fields(done: Done) -> dict[str, Any]:
    return {
        "done": True,
        "done_reason": "length" if done.finish_reason == "length" else "stop",
        "total_duration": _ns(done.total_seconds),
        "load_duration": _ns(done.load_seconds),
        # Ollama counts only the prompt tokens it evaluated, not those reused from the cache.
        "prompt_eval_count": done.stats.prompt_tokens - done.stats.cached_tokens,
        "prompt_eval_duration": _ns(done.stats.prompt_eval_seconds),
        "eval_count": done.stats.completion_tokens,
        "eval_duration": _ns(done.stats.eval_seconds),
    }


def to_ollama_generate_chunk(
    model: str, text: str, done: Done | None = None, logprobs: tuple[TokenLogprob, ...] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model,
        "created_at": timestamp(),
        "response": text,
        "done": False,
    }
    if done is not None:
        out.update(done_fields(done))
        out["context"] = list(done.stats.context)  # deprecated by Ollama, still sent by it
    if logprobs is not None:
        out["logprobs"] = logprob_entries(logprobs)
    return out


def to_ollama_chat_chunk(
    model: str,
    text: str,
    done: Done | None = None,
    logprobs: tuple[TokenLogprob, ...] | None = None,
    calls: list[tools_api.Call] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "model": model,
        "created_at": timestamp(),
        "message": {"role": "assistant", "content": text},
        "done": False,
    }
    if calls:
        out["message"]["tool_calls"] = [
            {"function": {"name": c.name, "arguments": c.arguments}} for c in calls
        ]
    if done is not None:
        out.update(done_fields(done))
    if logprobs is not None:
        out["logprobs"] = logprob_entries(logprobs)
    return out


def logprob_entries(items: tuple[TokenLogprob, ...]) -> list[dict[str, Any]]:
    """Ollama's (and OpenAI chat's) per-token shape."""

    def entry(t: TokenLogprob) -> dict[str, Any]:
        return {"token": t.token, "logprob": t.logprob, "bytes": list(t.bytes)}

    return [entry(t) | {"top_logprobs": [entry(a) for a in t.top]} for t in items]


def details(record: ModelRecord) -> dict[str, Any]:
    c = record.config
    return {
        "parent_model": "",
        "format": c.model_format,
        "family": c.model_family,
        "families": c.model_families or [c.model_family],
        "parameter_size": c.model_type,
        "quantization_level": c.file_type,
    }


def tag_entry(record: ModelRecord) -> dict[str, Any]:
    return {
        "name": record.name.display,
        "model": record.name.display,
        "modified_at": timestamp(record.modified_at),
        "size": record.size,
        "digest": record.digest.removeprefix("sha256:"),
        "details": details(record),
    }


def parameters_text(params: dict[str, Any]) -> str:
    lines = []
    for key, value in sorted(params.items()):
        for item in value if isinstance(value, list) else [value]:
            shown = f'"{item}"' if isinstance(item, str) else str(item)
            lines.append(f"{key:<30} {shown}")
    return "\n".join(lines)
