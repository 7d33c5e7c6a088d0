"""Ollama wire types and the pure conversions to and from the engine."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from slmkit.answer import media, parameters, reasoning
from slmkit.answer import tools as tools_api
from slmkit.answer.generation import Answer, AnswerEvent, Done, Text, Thinking, ToolCalls, facts
from slmkit.answer.schema import check_schema, json_object_schema
from slmkit.config import parse_duration
from slmkit.errors import InvalidRequest
from slmkit.pipe import Call, Choice, EngineRequest, Image, SamplingParams, TokenLogprob, Tool
from slmkit.server.wire import RequestBody
from slmkit.store import ModelRecord

TOOL_CHOICE_OPTION = "tool_choice"  # slmkit's extension, also accepted in options (ChatRequest)


def request_options(options: dict[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    """``options``, checked against the one parameter table (answer/parameters.py)."""
    values = {k: v for k, v in (options or {}).items() if k != TOOL_CHOICE_OPTION}
    return tuple(parameters.request_options(values, "options.").items())


class _Base(RequestBody):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = True
    options: dict[str, Any] | None = None
    keep_alive: str | float | int | None = None
    format: Any = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    think: bool | str | None = None  # reasoning (answer/reasoning.py, answer/profile.py)
    # A prompt over the context: refused unless truncate is true (Ollama's default is true and
    # silent; here it is asked for, and the tokens dropped are reported: slm.dropped_tokens)
    truncate: bool | None = None

    UNSET = (None, False, [], "", {})

    def truncation(self) -> int | None:
        return 0 if self.truncate else None

    def logprob_count(self) -> int | None:
        if self.top_logprobs is not None and not self.logprobs:
            raise InvalidRequest("top_logprobs: needs logprobs: true")
        return (self.top_logprobs or 0) if self.logprobs else None

    def output_schema(self) -> str | None:
        """``format``: "json" (any JSON object) or a JSON schema, checked (answer/schema.py)."""
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
    images: list[str] | None = Field(default=None, max_length=1000)  # base64 image files


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(pattern=r"^(system|user|assistant|tool)$")
    content: str = ""
    tool_calls: list[dict[str, Any]] | None = None  # an assistant turn that called tools
    tool_name: str | None = None  # a tool turn: which tool answered
    images: list[str] | None = Field(default=None, max_length=1000)  # base64 image files

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

    def tool_setup(self) -> tuple[list[Tool], Choice]:
        # tool_choice top-level, or in options for clients that cannot add fields (LangChain's ChatOllama)
        choice = self.tool_choice if self.tool_choice is not None else (self.options or {}).get("tool_choice")
        return tools_api.function_tools(self.tools, choice)


class EmbedRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    input: str | list[str]
    truncate: bool = True
    options: dict[str, Any] | None = None
    keep_alive: str | float | int | None = None
    dimensions: int | None = Field(default=None, ge=1)


class LegacyEmbeddingsRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(min_length=1)
    prompt: str
    options: dict[str, Any] | None = None
    keep_alive: str | float | int | None = None


class PlanRequest(RequestBody):
    """``POST /api/plan``: a model, and optionally the load settings to plan with instead of
    the model's and the server's (``options.num_ctx``, ``options.num_parallel``)."""

    model: str = Field(min_length=1, max_length=512)
    options: dict[str, Any] | None = None

    def settings(self) -> tuple[int | None, int | None]:
        values = dict(self.options or {})
        unknown = sorted(set(values) - {"num_ctx", "num_parallel"})
        if unknown:
            raise InvalidRequest(f"options.{unknown[0]}: a plan takes only num_ctx and num_parallel")
        checked = {k: parameters.convert(k, v, "options.") for k, v in values.items()}
        return checked.get("num_ctx"), checked.get("num_parallel")


class ModelRef(RequestBody):
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


class CreateRequest(RequestBody):
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


class StopRequest(ModelRef):
    """slmkit's ``/api/stop``: unload after the requests in flight, or at once with ``force``."""

    force: bool = False


class CopyRequest(RequestBody):
    source: str = Field(min_length=1)
    destination: str = Field(min_length=1)


# -- requests -> engine ----------------------------------------------------------------------
def _sampling(req: _Base) -> SamplingParams:
    """The request-only sampling fields; the table's come from options (ModelProfile.resolve)."""
    return SamplingParams(json_schema=req.output_schema(), logprobs=req.logprob_count())


def from_ollama_generate(req: GenerateRequest, request_id: str) -> EngineRequest:
    sampling = _sampling(req)
    options = request_options(req.options)
    context = tuple(req.context or ())
    if any(not 0 <= t < 2**31 for t in context):
        raise InvalidRequest("context: token ids must be non-negative integers")
    images = tuple(media.from_base64(b, f"images.{i}") for i, b in enumerate(req.images or ()))
    common: dict[str, Any] = {
        "options": options, "return_context": not images, "images": images, "truncate": req.truncation(),
    }  # fmt: skip
    if images and (req.suffix is not None or req.raw):
        raise InvalidRequest("images: not with raw or suffix prompts (the chat template places them)")
    if req.suffix is not None:  # fill in the middle: the raw prompt, then the gap, then the suffix
        return EngineRequest(request_id, sampling, prompt=req.prompt, suffix=req.suffix, **common)
    if req.raw:
        return EngineRequest(request_id, sampling, prompt=req.prompt, context=context, **common)
    messages = [{"role": "system", "content": req.system}] if req.system else []
    messages.append({"role": "user", "content": media.placed(req.prompt, len(images))})
    think = reasoning.check_think(req.think, "think")
    return EngineRequest(
        request_id, sampling, messages=tuple(messages), context=context, think=think,
        think_budget=reasoning.budget(think, None), **common,
    )  # fmt: skip


def from_ollama_chat(req: ChatRequest, request_id: str) -> EngineRequest:
    tools, choice = req.tool_setup()
    messages: list[dict[str, Any]] = []
    images: list[Image] = []
    for i, m in enumerate(req.messages):
        if m.images and m.role != "user":
            raise InvalidRequest(f"messages.{i}.images: only user messages carry images")
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
            mine = [media.from_base64(b, f"messages.{i}.images.{j}") for j, b in enumerate(m.images or ())]
            images += mine
            messages.append({"role": m.role, "content": media.placed(m.content, len(mine))})
    return EngineRequest(
        request_id,
        _sampling(req),
        images=tuple(images),
        messages=tuple(messages),
        options=request_options(req.options),
        think=(think := reasoning.check_think(req.think, "think")),
        think_budget=reasoning.budget(think, None),
        tools=tuple(tools),
        tool_choice=choice,
        truncate=req.truncation(),
    )


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
        "slm": facts(done),  # what happened, beyond Ollama's fields (cached, dropped, where it ran)
    }


def _chunk(model: str, chat: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"model": model, "created_at": timestamp()}
    if chat:
        out["message"] = {"role": "assistant", "content": ""}
    else:
        out["response"] = ""
    out["done"] = False
    return out


def _put(out: dict[str, Any], chat: bool, key: str, value: Any) -> None:
    """Chat puts answer fields under ``message`` (content, thinking, tool_calls)."""
    if chat:
        out["message"][key] = value
    else:
        out["response" if key == "content" else key] = value


def _calls(calls: tuple[Call, ...] | list[Call]) -> list[dict[str, Any]]:
    return [{"function": {"name": c.name, "arguments": c.arguments}} for c in calls]


def to_ollama_chunk(event: AnswerEvent, model: str, *, chat: bool, logprobs: bool) -> dict[str, Any]:
    """One answer event as one NDJSON object of /api/chat (``chat``) or /api/generate."""
    out = _chunk(event.model if isinstance(event, Done) else model, chat)
    if isinstance(event, Text):
        _put(out, chat, "content", event.text)
        if logprobs:
            out["logprobs"] = logprob_entries(event.logprobs)
    elif isinstance(event, Thinking):
        _put(out, chat, "thinking", event.text)
    elif isinstance(event, ToolCalls):
        _put(out, chat, "tool_calls", _calls(event.calls))
    else:
        out.update(done_fields(event))
        if not chat:
            out["context"] = list(event.stats.context)  # deprecated by Ollama, still sent by it
    return out


def to_ollama_answer(answer: Answer, *, chat: bool, logprobs: bool) -> dict[str, Any]:
    """A whole answer as one JSON object (``stream: false``)."""
    out = _chunk(answer.done.model, chat)
    _put(out, chat, "content", "" if answer.calls else answer.text)
    if answer.thinking:
        _put(out, chat, "thinking", answer.thinking)
    if answer.calls and chat:
        _put(out, chat, "tool_calls", _calls(answer.calls))
    out.update(done_fields(answer.done))
    if not chat:
        out["context"] = list(answer.done.stats.context)
    if logprobs:
        out["logprobs"] = logprob_entries(answer.done.logprobs)
    return out


def load_answer(model: str, *, chat: bool, unloaded: bool) -> dict[str, Any]:
    """The answer to an empty prompt: the model was loaded (or, keep_alive 0, unloaded)."""
    out = _chunk(model, chat)
    out.update(done=True, done_reason="unload" if unloaded else "load")
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


def parameters_text(params: Mapping[str, Any]) -> str:
    lines = []
    for key, value in sorted(params.items()):
        for item in value if isinstance(value, list | tuple) else [value]:
            shown = f'"{item}"' if isinstance(item, str) else str(item)
            lines.append(f"{key:<30} {shown}")
    return "\n".join(lines)


def ollama_body(
    message: str, status: int = 500, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """Ollama's error body: the message alone."""
    return {"error": message}
