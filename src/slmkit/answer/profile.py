"""ModelProfile: everything a stored model says about how it answers, resolved once.

A profile is built from a store record (manifest layers plus the GGUF header) the first
time a model is used, and cached by the manager per manifest digest. It holds the chat
template the worker renders, the model's PARAMETERs typed by the one parameter table
(answer/parameters.py), its SYSTEM prompt and MESSAGE history, its capabilities, its
adapters and what shapes its load. :meth:`ModelProfile.resolve` applies it to a request
from any dialect, so every API (OpenAI, Responses, Anthropic, Ollama, ``slmkit.load``,
``slm run``, the chat page) gets the same answer to the same question:

- sampling: request value > model PARAMETER > table default; max_tokens defaults to
  SLM_DEFAULT_MAX_TOKENS and is capped by SLM_MAX_TOKENS;
- messages: the model's SYSTEM unless the chat brings its own, then its MESSAGE history,
  then tools (in the template's own format when it renders tools, else described in text);
- template variables: enable_thinking / reasoning_effort (only for models that can think),
  tools.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.answer import media, parameters, reasoning, schema
from slmkit.answer import tools as tools_api
from slmkit.config import Config
from slmkit.errors import InvalidRequest, TemplateError
from slmkit.formats import (
    COMPLETION,
    EMBEDDING,
    INSERT,
    RERANK,
    THINKING,
    TOOLS,
    VISION,
    ModelFormat,
    format_of,
)
from slmkit.pipe import EngineRequest, LoadSpec
from slmkit.store import ModelRecord
from slmkit.store.gguf_info import GGUFInfo
from slmkit.template import is_jinja

log = logging.getLogger("slmkit.engine")


@dataclass(frozen=True)
class ModelProfile:
    name: str  # display name, e.g. "smollm2:135m"
    digest: str  # the manifest's digest: this version of the model
    template: str | None  # the chat template workers render (model's own, else the GGUF's)
    parameters: Mapping[str, Any]  # the model's PARAMETERs, typed and checked
    system: str | None  # default system prompt
    messages: tuple[dict[str, str], ...]  # few-shot history put before every chat
    capabilities: frozenset[str]
    model_path: Path  # the weights (GGUF blob)
    weights_digest: str | None  # the weights blob's digest, checked before each load (None: upstream)
    adapters: tuple[Path, ...]  # LoRA adapters applied at load
    record: ModelRecord  # what it was resolved from (names, sizes, dates for listings)
    upstream: dict[str, str] | None = None  # {"url", "model"}: a remote engine serves it
    info: GGUFInfo | None = None  # the GGUF header's facts (None for upstream models)

    @property
    def format(self) -> ModelFormat:
        """How it is stored (formats/): its facts, load spec, memory and backend."""
        return format_of(self.record)

    @classmethod
    def of(cls, record: ModelRecord, info: GGUFInfo | None) -> ModelProfile:
        """Build from a store record and its GGUF header (None for an upstream model)."""
        template = _usable_template(record, info.chat_template if info else None)
        caps = format_of(record).capabilities(info) if info is not None else {COMPLETION}
        if COMPLETION in caps and template and tools_api.supports_tools(template):
            caps.add(TOOLS)
        if COMPLETION in caps and template and reasoning.supports_thinking(template):
            caps.add(THINKING)
        if COMPLETION in caps and record.projector is not None:
            caps.add(VISION)
        return cls(
            name=record.name.display,
            digest=record.digest,
            template=template,
            parameters=_typed(record),
            system=record.system,
            messages=tuple(dict(m) for m in record.messages),
            capabilities=frozenset(caps),
            model_path=record.model_path,
            weights_digest=None if record.upstream else record.manifest.model_layer.digest,
            adapters=tuple(record.adapters),
            upstream=record.upstream,
            info=info,
            record=record,
        )

    def splits_reasoning(self, request: EngineRequest) -> bool:
        """Whether an answer's leading <think> block goes apart as reasoning: chats with a
        model that can think, unless thinking was turned off."""
        return request.messages is not None and THINKING in self.capabilities and request.think is not False

    def resolve(self, request: EngineRequest, config: Config) -> EngineRequest:
        """The request as the engine runs it: sampling merged, model context and tools in the
        messages, template variables set. Raises InvalidRequest naming the problem."""
        if COMPLETION not in self.capabilities:
            raise InvalidRequest(
                f"model '{self.name}' does not generate text: it is an embedding model "
                "(use the embeddings or rerank endpoints)"
            )
        if request.images:
            media.check_places(request)
        if request.images and VISION not in self.capabilities:
            raise InvalidRequest(
                f"images: model '{self.name}' does not take images (it has no vision projector)"
            )
        sampling = parameters.resolve(
            self.parameters,
            dict(request.options),
            base=request.sampling,
            default_max_tokens=config.default_max_tokens,
            max_tokens=config.max_tokens,
            max_stop=config.max_stop,
        )
        extra = list(request.template_vars)
        messages = request.messages
        choice = request.tool_choice or tools_api.NO_TOOLS
        tools = list(request.tools)
        if choice.mode == "required":
            if sampling.json_schema is not None:
                raise InvalidRequest("a response format cannot be combined with a required tool call")
            call = tools_api.call_schema(tools, choice, sampling.max_tokens)
            sampling = dataclasses.replace(sampling, json_schema=call)
        if sampling.json_schema is not None and sampling.max_tokens is not None:
            fitted = schema.fit_budget(sampling.json_schema, sampling.max_tokens)
            sampling = dataclasses.replace(sampling, json_schema=fitted)
        if messages is not None:
            native = TOOLS in self.capabilities
            messages = tuple(tools_api.with_tools(self._with_context(messages), tools, choice, native))
            extra += tools_api.template_vars(tools, choice, native)
            extra += self._thinking_vars(request.think)
        elif request.think:
            raise InvalidRequest("think: thinking needs a chat (not a raw prompt)")
        track = self.splits_reasoning(request)
        return dataclasses.replace(
            request, sampling=sampling, messages=messages, template_vars=tuple(extra), options=(),
            track_thinking=track, think_budget=request.think_budget if track else None,
        )  # fmt: skip

    def _with_context(self, messages: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
        """The model's SYSTEM (unless the chat brings its own) and MESSAGE history (after the
        system message)."""
        out = list(messages)
        if self.system and not any(m.get("role") == "system" for m in out):
            out.insert(0, {"role": "system", "content": self.system})
        if self.messages:
            at = next((i for i, m in enumerate(out) if m.get("role") != "system"), len(out))
            out[at:at] = [dict(m) for m in self.messages]
        return out

    def _thinking_vars(self, think: bool | str | None) -> list[tuple[str, Any]]:
        if think is None:
            return []
        if think is not False and THINKING not in self.capabilities:
            raise InvalidRequest(f"think: model '{self.name}' does not support thinking")
        out: list[tuple[str, Any]] = [("enable_thinking", think is not False)]
        if isinstance(think, str):
            out.append(("reasoning_effort", think))
        return out

    @property
    def context_length(self) -> int | None:
        """The model's num_ctx PARAMETER (overrides SLM_CONTEXT_LENGTH), if set."""
        value = self.parameters.get("num_ctx")
        return int(value) if value else None

    @property
    def num_parallel(self) -> int | None:
        value = self.parameters.get("num_parallel")
        return int(value) if value else None

    @property
    def keep_alive(self) -> float | None:
        """The model's keep_alive PARAMETER (seconds; negative: forever), if set."""
        value = self.parameters.get("keep_alive")
        return float(value) if value is not None else None

    @property
    def pinned(self) -> bool:
        """The model's ``pin`` PARAMETER: never evicted for room, never unloaded when idle."""
        return bool(self.parameters.get("pin", False))

    def show(self) -> list[str]:
        """Capabilities in Ollama's order, for /api/show."""
        order = (COMPLETION, TOOLS, INSERT, THINKING, VISION, EMBEDDING, RERANK)
        return [c for c in order if c in self.capabilities]


def _typed(record: ModelRecord) -> dict[str, Any]:
    """The record's PARAMETERs through the table. A pulled model may carry parameters this
    version does not know or values it refuses: those are skipped with a warning, so the
    model still serves."""
    out: dict[str, Any] = {}
    for key, value in record.params.items():
        try:
            converted = parameters.convert(key, value, "parameter ")
        except InvalidRequest as exc:
            log.warning("%s: ignoring %s", record.name.display, exc)
            continue
        if converted is not None:
            out[key.lower()] = converted
    return out


def _usable_template(record: ModelRecord, gguf_template: str | None) -> str | None:
    """The model's template unless it is a Go template using features we do not render;
    then the GGUF's own Jinja template."""
    from slmkit.gotemplate import GoTemplate

    if not record.template or is_jinja(record.template):
        return record.template or gguf_template
    try:
        GoTemplate(record.template)
        return record.template
    except TemplateError as exc:
        log.warning("%s: %s; using the GGUF's chat template", record.name.display, exc)
        return gguf_template


def load_spec(
    profile: ModelProfile, config: Config, *, n_parallel: int = 1, n_ctx: int | None = None
) -> LoadSpec:
    """The one LoadSpec builder (the server's manager, ``slmkit.load``, batch jobs): the
    model's num_ctx PARAMETER, else SLM_CONTEXT_LENGTH, and every SLM_* load setting, in the
    form the model's format loads."""
    assert profile.info is not None, "an upstream model is not loaded here"
    return profile.format.load_spec(
        profile.model_path,
        profile.info,
        config,
        n_ctx=n_ctx or profile.context_length or config.context_length,
        n_parallel=n_parallel,
        adapters=profile.adapters,
        projector=profile.record.projector,
    )


def load_profile(record: ModelRecord) -> ModelProfile:
    """Read what a profile needs from disk (blocking: call it off the event loop)."""
    if record.upstream is not None:
        return ModelProfile.of(record, None)
    return ModelProfile.of(record, format_of(record).facts(record))
