"""The one answer pipeline: every API dialect, the bench and ``slmkit.load`` go through it.

Three layers (mlx-lm's): the worker's token events (TextDelta, Finished, Failed), then typed
answer events, then each dialect's wire format (a pure mapping in its ``protocol.py``):

    Text(text, logprobs)   answer text, as it comes (held back while it may be a tool call)
    Thinking(text)         the reasoning block (<think>...</think>), split off the answer
    ToolCalls(calls)       the tool calls the answer made, parsed once at the end
    Done(...)              how it ended, counts and timings; always last

The reasoning splitter and the tool-call parser run here, once (:class:`AnswerParser`), so
every dialect splits and parses the same way. :func:`stream` resolves the request against
the model's profile (answer/profile.py) before any worker sees it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from slmkit.answer import media, reasoning
from slmkit.answer import tools as tools_api
from slmkit.errors import DeadlineExceeded, InvalidRequest, LimitExceeded
from slmkit.formats import RERANK
from slmkit.models.manager import ModelManager
from slmkit.pipe import (
    Call,
    Choice,
    EngineRequest,
    Event,
    Failed,
    Finished,
    FinishReason,
    GenerationStats,
    TextDelta,
    TokenLogprob,
    Tool,
)

if TYPE_CHECKING:
    from slmkit.answer.profile import ModelProfile

log = logging.getLogger("slmkit.engine")


@dataclass(frozen=True)
class Text:
    text: str  # new answer text (empty only when it carries logprobs of held-back tokens)
    logprobs: tuple[TokenLogprob, ...] = ()  # one per generated token, when asked for


@dataclass(frozen=True)
class Thinking:
    text: str  # new reasoning text


@dataclass(frozen=True)
class ToolCalls:
    calls: tuple[Call, ...]  # every call the answer made (sent once, at the end)


@dataclass(frozen=True)
class Done:
    model: str  # display name of the model that answered
    finish_reason: FinishReason
    stats: GenerationStats
    load_seconds: float = 0.0  # time spent loading the model for this request
    total_seconds: float = 0.0  # from receipt to the last token
    logprobs: tuple[TokenLogprob, ...] = ()  # every token's, for whole answers (complete())
    tool_calls: bool = False  # the answer was tool calls (dialects report finish "tool_calls")
    ran: Ran | None = None  # where it ran (None: not known, e.g. a fake in a test)


@dataclass(frozen=True)
class Ran:
    """Where an answer was computed: said with every answer (:func:`facts`)."""

    backend: str  # "llama.cpp", "onnxruntime", or "upstream" (a remote server answered)
    device: str  # "cpu" (these builds decode on the CPU), or "remote"
    threads: int  # CPU threads decoding when it finished (the governor may adapt them)
    context_window: int  # tokens one sequence may hold


BACKENDS = {"llama": "llama.cpp", "onnx": "onnxruntime"}


def ran_on(loaded: Any) -> Ran:
    """The facts of a loaded model (models/manager.LoadedModel)."""
    info = getattr(loaded.worker, "info", None) or loaded.info
    if loaded.profile.upstream is not None:
        return Ran("upstream", "remote", 0, loaded.info.n_ctx)
    return Ran(BACKENDS.get(loaded.profile.format.backend, loaded.profile.format.backend), "cpu",
               info.n_threads, loaded.info.n_ctx)  # fmt: skip


def facts(done: Done) -> dict[str, Any]:
    """What happened, the same on every dialect (its own usage fields where it has them; the
    ``slm`` object of the last body or stream event; ``X-Slm-*`` headers on whole answers)."""
    s = done.stats
    out: dict[str, Any] = {
        "prompt_tokens": s.prompt_tokens,
        "cached_tokens": s.cached_tokens,
        "dropped_tokens": s.dropped_tokens,
        "draft_tokens": s.draft_tokens,
        "accepted_tokens": s.accepted_tokens,
    }
    if done.ran is not None:
        out |= {"context_window": done.ran.context_window, "backend": done.ran.backend,
                "device": done.ran.device, "threads": done.ran.threads}  # fmt: skip
    return out


AnswerEvent = Text | Thinking | ToolCalls | Done


@dataclass(frozen=True)
class Answer:
    """A whole answer (:func:`complete`)."""

    text: str
    thinking: str
    calls: tuple[Call, ...]
    done: Done


class AnswerParser:
    """Raw answer text in, answer events out: the reasoning split, then the tool-call
    hold-back. Pure; one per answer."""

    def __init__(self, *, reasoning_split: bool, tools: Iterable[Tool] = (), choice: Choice | None = None):
        self._splitter = reasoning.Splitter() if reasoning_split else None
        self._hold = tools_api.Holdback(list(tools), choice)
        self._pending: tuple[TokenLogprob, ...] = ()  # logprobs of text not yet sent
        self.called = False

    def feed(self, text: str, logprobs: tuple[TokenLogprob, ...] = ()) -> list[Text | Thinking]:
        self._pending += logprobs
        thought, answer = self._splitter.feed(text) if self._splitter else ("", text)
        out: list[Text | Thinking] = []
        if thought:
            out.append(Thinking(thought))
            if not answer:
                self._pending = ()  # the reasoning's tokens: no dialect reports their logprobs
        if answer and (shown := self._hold.feed(answer)):
            out.append(Text(shown, self._pending))
            self._pending = ()
        return out

    @property
    def enough(self) -> bool:
        """The answer is complete before the model ended it (a required call list began to
        repeat itself): the generation should stop now."""
        return self._hold.enough

    def finish(self, truncated: bool = False) -> list[Text | Thinking | ToolCalls]:
        """The rest, once the answer has ended (``truncated``: by the token limit)."""
        out: list[Text | Thinking | ToolCalls] = []
        if self._splitter is not None:
            thought, answer = self._splitter.flush()
            if thought:
                out.append(Thinking(thought))
            if answer:
                self._hold.feed(answer)
        text, calls = self._hold.finish(truncated)
        if calls:
            self.called = True
            out.append(ToolCalls(tuple(calls)))
        elif text or self._pending:
            out.append(Text(text, self._pending))
        self._pending = ()
        return out


class Meter(Protocol):
    """What the server measures per request (server/context.RequestContext)."""

    request_id: str
    model: str | None
    ttft: float | None
    token_gaps: list[float]
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    draft_tokens: int
    accepted_tokens: int
    queue_seconds: float | None
    facts: dict[str, Any] | None


class Answering:
    """The one answer pipeline driver: a worker's events for one request in, answer events
    out (the parser, the early end once a call list is complete, Done last), with the
    request's metering. Pure and synchronous: the server's :func:`stream` and
    ``slmkit.load`` (local.py) both drive it, so they answer alike."""

    def __init__(
        self,
        profile: ModelProfile,
        request: EngineRequest,
        started: float,
        meter: Meter | None = None,
        load_seconds: float = 0.0,
        model: str | None = None,
        ran: Ran | None = None,
    ) -> None:
        self.ran = ran
        self.parser = AnswerParser(
            reasoning_split=profile.splits_reasoning(request), tools=request.tools, choice=request.tool_choice
        )
        self.model = model or profile.name  # the name Done reports (the loaded model's)
        self.started = self._last = started
        self.meter = meter
        self.load_seconds = load_seconds
        self.ended = False  # the answer was complete before the worker finished it
        self.end_now = False  # ask the worker to stop (once)

    def on(self, event: Event, now: float) -> list[AnswerEvent]:
        """The answer events ``event`` (at time ``now``) makes; raises a Failed's error."""
        if isinstance(event, TextDelta):
            meter = self.meter
            if meter is not None and event.tokens:
                if meter.ttft is None:
                    meter.ttft = now - self.started
                else:  # a merged delta spreads its gap over its tokens
                    meter.token_gaps.extend([(now - self._last) / event.tokens] * event.tokens)
            self._last = now
            out: list[AnswerEvent] = list(self.parser.feed(event.text, event.logprobs))
            self.end_now = self.parser.enough and not self.ended
            self.ended = self.ended or self.end_now
            return out
        if isinstance(event, Finished):
            if self.meter is not None:
                self.meter.prompt_tokens += event.stats.prompt_tokens
                self.meter.cached_tokens += event.stats.cached_tokens
                self.meter.completion_tokens += event.stats.completion_tokens
                self.meter.draft_tokens += event.stats.draft_tokens
                self.meter.accepted_tokens += event.stats.accepted_tokens
                self.meter.queue_seconds = event.stats.queue_seconds
            done: list[AnswerEvent] = list(
                self.parser.finish(truncated=event.reason == "length" and not self.ended)
            )
            ending = Done(
                model=self.model,
                finish_reason="stop" if self.ended else event.reason,
                stats=event.stats,
                load_seconds=self.load_seconds,
                total_seconds=now - self.started,
                tool_calls=self.parser.called,
                ran=self.ran,
            )
            if self.meter is not None:
                self.meter.facts = facts(ending)
            return [*done, ending]
        if isinstance(event, Failed):
            raise event.error
        return []


def new_request_id() -> str:
    return uuid.uuid4().hex


async def stream(
    manager: ModelManager,
    model: str,
    request: EngineRequest,
    keep_alive: float | None = None,
    meter: Meter | None = None,
) -> AsyncIterator[AnswerEvent]:
    """Run one generation, yielding answer events, Done last; raises SlmError on failure.

    Closing the iterator early (client gone) aborts the request in the worker.
    """
    started = time.perf_counter()
    limit = manager.config.request_timeout
    deadline = started + limit if limit > 0 else None
    profile = await manager.profile(model)
    request = profile.resolve(request, manager.config)
    if request.images:  # checked and decoded here, off the loop: workers get pixels only
        request = replace(request, images=await media.decode_all(request.images, manager.config))
    if manager.config.log_prompts:
        log.info(
            "request %s prompt: %r", meter.request_id if meter else "-", request.messages or request.prompt
        )
    async with manager.use(model, keep_alive, profile) as (loaded, load_seconds):
        if meter is not None:
            meter.model = loaded.name
        answering = Answering(profile, request, started, meter, load_seconds, loaded.name, ran_on(loaded))
        events = loaded.worker.generate(request)
        try:
            while True:
                event = await _next(events, deadline, limit)
                for item in answering.on(event, time.perf_counter()):
                    yield item
                    if isinstance(item, Done):
                        return
                if answering.end_now:
                    loaded.worker.end(request.request_id)
        finally:
            await events.aclose()  # type: ignore[attr-defined]


async def render(
    manager: ModelManager, model: str, request: EngineRequest
) -> tuple[EngineRequest, list[int], int]:
    """What a request's prompt becomes, without running it: the request as resolved against
    the model's profile (sampling merged, tools and template variables in), the prompt's
    token ids (chat template rendered, BOS as the engine adds it; longer than the context is
    refused as it would be), and the context window. vLLM's render endpoints and the chat
    form of /tokenize answer with it (routers hash the ids to keep a conversation's prefix on
    one replica)."""
    profile = await manager.profile(model)
    request = profile.resolve(request, manager.config)
    if request.images:
        raise InvalidRequest("images: prompts with images are not rendered to token ids")
    async with manager.use(model, None, profile) as (loaded, _):
        tokens = await loaded.worker.render(request)
        return request, tokens, loaded.info.n_ctx


async def count(manager: ModelManager, model: str, request: EngineRequest) -> int:
    """How many tokens the request's prompt is, exactly as generation would count it
    (``prompt_tokens``): template, system, tools, images. Anthropic's count_tokens and the
    Responses API's input_tokens answer with it."""
    profile = await manager.profile(model)
    request = profile.resolve(request, manager.config)
    if request.images:  # decoded as for generation: an image's token count depends on its size
        request = replace(request, images=await media.decode_all(request.images, manager.config))
    async with manager.use(model, None, profile) as (loaded, _):
        return len(await loaded.worker.render(request))


async def _next(events: AsyncIterator[Event], deadline: float | None, limit: float) -> Event:
    if deadline is None:
        return await anext(events)
    try:  # a timer around the await (wait_for would start a task per token on Python 3.11)
        async with asyncio.timeout(max(0.0, deadline - time.perf_counter())):
            return await anext(events)
    except TimeoutError as exc:
        raise DeadlineExceeded(f"request took longer than {limit:g}s (SLM_REQUEST_TIMEOUT)") from exc


async def collect(events: AsyncIterator[AnswerEvent]) -> Answer:
    """A whole answer from its events."""
    text: list[str] = []
    thought: list[str] = []
    logprobs: list[TokenLogprob] = []
    calls: tuple[Call, ...] = ()
    done: Done | None = None
    async for item in events:
        if isinstance(item, Text):
            text.append(item.text)
            logprobs += item.logprobs
        elif isinstance(item, Thinking):
            thought.append(item.text)
        elif isinstance(item, ToolCalls):
            calls = item.calls
        else:
            done = item
    assert done is not None
    return Answer("".join(text), "".join(thought).strip(), calls, replace(done, logprobs=tuple(logprobs)))


async def complete(
    manager: ModelManager,
    model: str,
    request: EngineRequest,
    keep_alive: float | None = None,
    meter: Meter | None = None,
) -> Answer:
    return await collect(stream(manager, model, replace(request, streamed=False), keep_alive, meter))


async def primed(items: AsyncIterator[AnswerEvent]) -> AsyncIterator[AnswerEvent]:
    """Start a stream before the HTTP response begins, so that errors raised before the
    first item (unknown model, prompt too long, load failure) still get a proper status."""
    first = await anext(items)

    async def rest() -> AsyncIterator[AnswerEvent]:
        try:
            yield first
            async for item in items:
                yield item
        finally:
            await items.aclose()  # type: ignore[attr-defined]

    return rest()


@dataclass(frozen=True)
class Embedded:
    model: str  # display name of the model that embedded
    vectors: list[list[float]]
    tokens: int  # tokens read
    load_seconds: float


async def embed(
    manager: ModelManager,
    model: str,
    inputs: list[str],
    *,
    dimensions: int | None = None,
    keep_alive: float | None = None,
    priority: int = 0,
) -> Embedded:
    """Vectors for ``inputs`` (checked by :func:`embedding_inputs`), from the model's worker:
    every dialect's embeddings, and rerank. ``dimensions``, when given, must be the model's."""
    profile = await manager.profile(model)
    if RERANK in profile.capabilities:
        raise InvalidRequest(
            f"model '{model}' is a cross-encoder reranker: it scores (query, document) pairs "
            "at /v1/rerank, it does not embed texts"
        )
    async with manager.use(model, keep_alive, profile) as (loaded, load_seconds):
        if dimensions is not None and dimensions != loaded.info.n_embd:
            raise InvalidRequest(f"dimensions: this model only produces {loaded.info.n_embd} dimensions")
        vectors, tokens = await loaded.worker.embed(inputs, priority)
        return Embedded(loaded.name, vectors, tokens, load_seconds)


def embedding_inputs(value: str | list[str], limit: int) -> list[str]:
    """One or more embedding inputs, checked the same for every dialect: non-empty strings,
    at most ``limit`` of them (SLM_MAX_EMBED_INPUTS; each is also capped in tokens)."""
    items = [value] if isinstance(value, str) else list(value)
    if not items or any(not s for s in items):
        raise InvalidRequest("input: must be a non-empty string or a list of non-empty strings")
    if len(items) > limit:
        raise LimitExceeded(
            f"input: {len(items)} inputs, more than the limit of {limit} (SLM_MAX_EMBED_INPUTS)"
        )
    return items
