"""EngineCore: one model, one backend, one scheduler; ``step()`` is schedule, execute,
make output (vLLM v1's EngineCore.step). It runs in the worker process that owns the
model, or in-process for ``slmkit.load``; nothing else calls the backend.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from slmkit.engine import thinking
from slmkit.engine.backends import Backend
from slmkit.engine.output import IncrementalDecoder, StopMatcher
from slmkit.engine.plan import FinishedSequence, StepPlan, StepResult, is_media
from slmkit.engine.scheduler import Scheduler
from slmkit.engine.thinking import Reasoning
from slmkit.engine.threads import STALLED, ThreadGovernor
from slmkit.errors import InvalidRequest, LimitExceeded, SlmError, contain
from slmkit.pipe import (
    EngineRequest,
    Event,
    Failed,
    Finished,
    GenerationStats,
    TextDelta,
    TokenLogprob,
)
from slmkit.template import FALLBACK_TEMPLATE, ChatTemplate


@dataclass
class _Active:
    request: EngineRequest
    prompt_tokens: int
    decoder: IncrementalDecoder = field(default_factory=IncrementalDecoder)
    stops: StopMatcher = field(default_factory=lambda: StopMatcher(()))
    prompt_eval_seconds: float = 0.0  # steps that evaluated this request's prompt
    eval_seconds: float = 0.0  # steps that decoded its tokens
    arrived: float = 0.0  # clock() at add_request
    admitted: float | None = None  # clock() of its first scheduled step
    tokens: list[int] | None = None  # the prompt's, then each generated one (return_context only)
    prompt: tuple[int, ...] = ()  # the prompt's tokens, when they are scored (prompt_logprobs)
    prompt_scores: dict[int, TokenLogprob] = field(default_factory=dict)  # position -> its score
    reasoning: Reasoning | None = None  # its thinking, counted (and ended at a budget)
    dropped: int = 0  # prompt tokens truncation cut (request.truncate)


log = logging.getLogger("slmkit.engine")


class EngineCore:
    def __init__(
        self,
        backend: Backend,
        template: str | None,
        *,
        max_waiting: int = 512,
        template_timeout: float = 1.0,
        draft_tokens: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.backend = backend
        self._think_close: list[int] | None = None  # the reasoning close marker's token ids
        info = backend.info
        self.scheduler = Scheduler(
            num_slots=info.n_parallel,
            slot_capacity=info.n_ctx,
            max_batch_tokens=info.n_batch,
            max_waiting=max_waiting,
            draft_tokens=draft_tokens if backend.speculative else 0,
            pool_capacity=info.kv_cells,
            share_prefixes=backend.shares_prefixes,
        )
        self.template = ChatTemplate(
            template or FALLBACK_TEMPLATE,
            bos_token=backend.bos_token,
            eos_token=backend.eos_token,
            timeout=template_timeout,
        )
        self.clock = clock
        self._active: dict[str, _Active] = {}
        # Requests of a failed step, each to be run alone until it gets a token (see _contain).
        self._suspects: list[str] = []
        self.stalled = False  # the last step took STALLED times its predicted time or more

    @property
    def has_work(self) -> bool:
        return self.scheduler.has_work

    @property
    def kv_tokens(self) -> int:
        """Tokens held in KV cells across all slots (running and cached)."""
        return sum(len(slot.tokens) for slot in self.scheduler.slots)

    def build_prompt(self, request: EngineRequest) -> list[int]:
        """Render (for chat) and tokenize a request's prompt; check it fits the context."""
        return self._prompt(request)[0]

    def _prompt(self, request: EngineRequest) -> tuple[list[int], int]:
        """The prompt's tokens, and how many were dropped to fit (``request.truncate``)."""
        if request.messages is not None:
            text = self.template.render(
                request.messages,
                add_generation_prompt=request.add_generation_prompt,
                extra=dict(request.template_vars) or None,
            )
            add_bos = (
                self.backend.add_bos
                and not request.context
                and not (self.backend.bos_token and text.startswith(self.backend.bos_token))
            )
        else:
            text = request.prompt or ""
            add_bos = self.backend.add_bos and not request.context
        if request.suffix is not None:
            if self.backend.fim is None:
                raise InvalidRequest("suffix: this model has no fill-in-the-middle tokens")
            pre, suf, mid = self.backend.fim
            prefix = self.backend.tokenize(text, add_bos=False)
            after = self.backend.tokenize(request.suffix, add_bos=False)
            bos = self.backend.tokenize("", add_bos=True) if self.backend.add_bos else []
            tokens = [*bos, pre, *prefix, suf, *after, mid]
        else:
            vocab = self.backend.info.n_vocab
            bad = next((t for t in request.context if not 0 <= t < vocab), None)
            if bad is not None:  # checked before batching: one bad id must not fail the batch
                raise InvalidRequest(f"context: token id {bad} is not in the model's vocabulary of {vocab}")
            if request.images:
                tokens = list(request.context) + self._with_images(request, text, add_bos)
            else:
                tokens = list(request.context) + self.backend.tokenize(text, add_bos=add_bos)
        if not tokens:
            raise InvalidRequest("prompt is empty")
        n_ctx, own = self.window(request)
        cap = request.truncate if request.truncate else n_ctx - 1
        if len(tokens) >= n_ctx or (request.truncate and len(tokens) > min(cap, n_ctx - 1)):
            if request.truncate is None:
                limit = f"the request's num_ctx of {n_ctx}" if own else f"the context window of {n_ctx}"
                raise LimitExceeded(
                    f"prompt is {len(tokens)} tokens, more than {limit} allows (or ask for its oldest "
                    "tokens to be dropped: Ollama's truncate, OpenAI's truncate_prompt_tokens)"
                )
            return self._truncate(request, tokens, n_ctx, add_bos)
        return tokens, 0

    def _truncate(
        self, request: EngineRequest, tokens: list[int], n_ctx: int, add_bos: bool
    ) -> tuple[list[int], int]:
        """Drop the oldest tokens after the kept start (BOS and the system prompt) until the
        prompt fits: ``truncate`` tokens at most, or (0) the window less room to answer (the
        request's max_tokens, at most half the window)."""
        if request.images or request.suffix is not None:
            raise LimitExceeded("truncate: prompts with images or a suffix are not truncated; shorten them")
        wanted = request.sampling.max_tokens or n_ctx // 4
        limit = (
            min(request.truncate, n_ctx - 1) if request.truncate else n_ctx - max(1, min(wanted, n_ctx // 2))
        )
        keep = self._kept_start(request, tokens, add_bos)
        if keep >= limit:
            raise LimitExceeded(
                f"truncate: the system prompt alone is {keep} tokens; dropping what follows it "
                f"cannot fit {limit}"
            )
        dropped = len(tokens) - limit
        return tokens[:keep] + tokens[keep + dropped :], dropped

    def _kept_start(self, request: EngineRequest, tokens: list[int], add_bos: bool) -> int:
        """How many leading tokens truncation keeps: the rendered system messages (their
        tokens shared with the prompt's start), else the BOS token."""
        system = [m for m in request.messages or () if m.get("role") == "system"]
        start = 1 if add_bos and tokens and self.backend.add_bos else 0
        if not system or request.messages is None or request.messages[: len(system)] != tuple(system):
            return start
        try:
            text = self.template.render(
                system, add_generation_prompt=False, extra=dict(request.template_vars) or None
            )
        except SlmError:  # a template that wants a user turn: keep the start only
            return start
        head = self.backend.tokenize(text, add_bos=add_bos)
        same = next(
            (i for i, (a, b) in enumerate(zip(head, tokens, strict=False)) if a != b),
            min(len(head), len(tokens)),
        )
        return max(start, same)

    def render(self, request: EngineRequest) -> list[int]:
        """The prompt's token ids, unrun (an image is a run of placeholders as long as its
        tokens): the render endpoints, /tokenize's chat form and the token counts. What the
        prompt held (its images) is let go at once."""
        try:
            return self.build_prompt(request)
        finally:
            if request.images:
                self.backend.release(request.request_id)

    def _with_images(self, request: EngineRequest, text: str, add_bos: bool) -> list[int]:
        if request.sampling.prompt_logprobs is not None:
            raise InvalidRequest("prompt_logprobs: not available for prompts with images")
        tokens = self.backend.tokenize_media(
            request.request_id, text, request.images, add_bos, offset=len(request.context)
        )
        if tokens and is_media(tokens[-1]):
            raise InvalidRequest("images: a prompt must not end with an image")
        return tokens

    def tokenize(self, text: str, add_special: bool) -> list[int]:
        """``text``'s token ids (special tokens parsed), with BOS when ``add_special`` and the
        model wants one: the /tokenize endpoint's answer."""
        return self.backend.tokenize(text, add_bos=add_special and self.backend.add_bos)

    def detokenize(self, tokens: list[int]) -> str:
        """The text of token ids (invalid UTF-8 replaced); ids outside the vocabulary are a 400."""
        vocab = self.backend.info.n_vocab
        bad = next((t for t in tokens if not 0 <= t < vocab), None)
        if bad is not None:
            raise InvalidRequest(f"tokens: token id {bad} is not in the model's vocabulary of {vocab}")
        return b"".join(self.backend.token_bytes(t) for t in tokens).decode("utf-8", errors="replace")

    def window(self, request: EngineRequest) -> tuple[int, bool]:
        """The request's context window (its num_ctx, capped by the model's per sequence),
        and whether it is the request's own."""
        n_ctx, asked = self.backend.info.n_ctx, request.sampling.context_window
        return (asked, True) if asked is not None and asked < n_ctx else (n_ctx, False)

    def add_request(self, request: EngineRequest) -> None:
        """Queue a request; raises SlmError (bad prompt, busy) without side effects. Any
        other error its prompt or sampler set-up raises is this request's alone: it comes
        out as RequestFailed, and the engine goes on."""
        try:
            tokens, dropped = self._prompt(request)
        except Exception as exc:  # one request's boundary (errors.contain)
            self.backend.release(request.request_id)  # images it may hold
            raise contain(exc, "reading the prompt") from exc
        room = self.window(request)[0] - len(tokens)
        wanted = request.sampling.max_tokens
        try:
            self.backend.start(request.request_id, request.sampling)  # may refuse (a bad grammar)
            self.scheduler.add_request(
                request.request_id,
                tokens,
                room if wanted is None else min(wanted, room),
                speculate=request.sampling.logprobs is None,  # logprobs come one token per step
                score_prompt=request.sampling.prompt_logprobs is not None,
                priority=request.priority,
                paced=request.streamed,
            )
        except Exception as exc:  # one request's boundary (errors.contain)
            self.backend.release(request.request_id)
            raise contain(exc, "setting up sampling") from exc
        self._active[request.request_id] = _Active(
            request,
            len(tokens),
            stops=StopMatcher(request.sampling.stop),
            arrived=self.clock(),
            tokens=tokens if request.return_context else None,
            prompt=tuple(tokens) if request.sampling.prompt_logprobs is not None else (),
            reasoning=self._reasoning(request, tokens),
            dropped=dropped,
        )

    def _reasoning(self, request: EngineRequest, prompt: list[int]) -> Reasoning | None:
        """Follow a request's thinking when it may think (track_thinking) or has a budget."""
        if not request.track_thinking and request.think_budget is None:
            return None
        tail = b"".join(self.backend.token_bytes(t) for t in prompt[-8:] if t >= 0)
        opened = tail.decode("utf-8", errors="replace").rstrip().endswith(thinking.OPEN)
        if self._think_close is None:  # once per model
            self._think_close = self.backend.tokenize(thinking.CLOSING_TEXT, add_bos=False)
        return Reasoning(request.think_budget, self._think_close, opened)

    def abort(self, request_id: str) -> list[tuple[str, Event]]:
        events: list[tuple[str, Event]] = []
        for fin in self.scheduler.finish_requests([request_id], "cancelled"):
            try:
                events += self._finish(fin, flush=False)
            except Exception as exc:  # one request's boundary (errors.contain)
                events.append(self._fail(fin.request_id, contain(exc, "finishing the answer")))
        return events

    def step(self) -> list[tuple[str, Event]]:
        while self._suspects and self._suspects[0] not in self.scheduler.running:
            self._suspects.pop(0)  # finished or aborted meanwhile
        self.scheduler.solo = self._suspects[0] if self._suspects else None
        self.stalled = False
        plan = self.scheduler.schedule()
        if plan.empty:
            return []
        started = self.clock()
        try:
            result = self.backend.execute(plan)
        except Exception as exc:  # contained: the step's requests replay, the culprit alone fails
            return self._contain(plan, contain(exc, "running a step"))
        if self.scheduler.solo in result.tokens:
            self._suspects.pop(0)  # it ran alone through its replay and got a token: innocent
        elapsed = self.clock() - started
        slower = self.scheduler.observe(plan, elapsed)
        self.stalled = slower is not None and slower >= STALLED
        for chunk in plan.prefill:
            if self._active[chunk.request_id].admitted is None:
                self._active[chunk.request_id].admitted = started
        if result.end_of_generation:
            ignored = {r for r in result.end_of_generation if self._active[r].request.sampling.ignore_eos}
            result = dataclasses.replace(result, end_of_generation=result.end_of_generation - ignored)
        for chunk in plan.prefill:
            self._active[chunk.request_id].prompt_eval_seconds += elapsed
        for item in plan.decode:
            self._active[item.request_id].eval_seconds += elapsed
        result = self._force(result)
        finished = self.scheduler.update_from_output(plan, result)
        for request_id, scores in result.prompt_logprobs.items():
            scoring = self._active.get(request_id)
            if scoring is not None:  # a replayed chunk scores its positions again: same values
                for position, token, value, top in scores:
                    scoring.prompt_scores[position] = self._logprob(token, value, top)
        events: list[tuple[str, Event]] = []
        stopped: list[str] = []
        broken: dict[str, SlmError] = {}  # requests whose own output handling raised
        for request_id, token in result.tokens.items():
            try:
                delta, hit = self._output(request_id, token, result)
            except Exception as exc:  # one request's boundary (errors.contain)
                broken[request_id] = contain(exc, "decoding the answer")
                continue
            events.append((request_id, delta))
            if hit:
                stopped.append(request_id)
        done = {f.request_id for f in finished}
        finished += self.scheduler.finish_requests([r for r in stopped if r not in done], "stop")
        done = {f.request_id for f in finished}
        finished += self.scheduler.finish_requests([r for r in broken if r not in done], "cancelled")
        for fin in finished:
            if fin.request_id not in broken:
                try:
                    events += self._finish(fin, flush=fin.request_id not in stopped)
                    continue
                except Exception as exc:  # one request's boundary (errors.contain)
                    broken[fin.request_id] = contain(exc, "finishing the answer")
            events.append(self._fail(fin.request_id, broken[fin.request_id]))
        return events

    def _force(self, result: StepResult) -> StepResult:
        """Put the forced tokens of sequences whose reasoning budget ran out in place of what
        their samplers drew (engine/thinking.py)."""
        forced: dict[str, int] = {}
        for request_id in result.tokens:
            active = self._active.get(request_id)
            token = active.reasoning.next_forced() if active is not None and active.reasoning else None
            if token is not None:
                forced[request_id] = token
        if not forced:
            return result
        return dataclasses.replace(
            result,
            tokens={**result.tokens, **forced},
            end_of_generation=result.end_of_generation - forced.keys(),
            logprobs={r: v for r, v in result.logprobs.items() if r not in forced},
        )

    def _output(self, request_id: str, token: int, result: StepResult) -> tuple[TextDelta, bool]:
        """One request's text of this step (its accepted draft tokens, then its sampled one)
        and whether a stop string ended it."""
        active = self._active[request_id]
        new = [*result.accepted.get(request_id, ()), token]
        ends = request_id in result.end_of_generation  # its last token ends generation
        text, hit = "", False
        for i, t in enumerate(new):
            last = ends and i == len(new) - 1
            if active.tokens is not None and not last:
                active.tokens.append(t)
            raw = b"" if last else self.backend.token_bytes(t)
            piece, hit = active.stops.feed(active.decoder.feed(raw))
            text += piece
            if hit:
                break
        if active.reasoning is not None:
            active.reasoning.feed(len(new) - ends, text)  # the end-of-generation token is no thought
            text = active.reasoning.announce(text)
        scored = result.logprobs.get(request_id)
        logprobs = (self._logprob(token, *scored),) if scored is not None else ()
        return TextDelta(text, len(new), logprobs), hit

    def _fail(self, request_id: str, exc: SlmError) -> tuple[str, Event]:
        """End one request that the scheduler already let go of, with ``exc``."""
        self._active.pop(request_id, None)
        self.backend.release(request_id)
        return (request_id, Failed(exc))

    def _logprob(self, token: int, logprob: float, top: tuple[tuple[int, float], ...]) -> TokenLogprob:
        def entry(t: int, lp: float) -> TokenLogprob:
            raw = self.backend.token_bytes(t)
            return TokenLogprob(raw.decode("utf-8", errors="replace"), tuple(raw), lp)

        return dataclasses.replace(entry(token, logprob), top=tuple(entry(t, lp) for t, lp in top))

    def _prompt_logprobs(self, active: _Active) -> tuple[TokenLogprob, ...]:
        """Every prompt token's entry, in order; the first has nothing before it to score it."""
        if not active.prompt or len(active.prompt_scores) < len(active.prompt) - 1:
            return ()  # not asked, or ended before its prompt was read (cancelled)
        first = self._logprob(active.prompt[0], 0.0, ())
        return (first, *(active.prompt_scores[p] for p in range(1, len(active.prompt))))

    def _finish(self, item: FinishedSequence, *, flush: bool) -> list[tuple[str, Event]]:
        active = self._active.pop(item.request_id)
        self.backend.release(item.request_id)
        tail = ""
        if flush:
            tail, _ = active.stops.feed(active.decoder.flush())
            tail += active.stops.flush()
        stats = GenerationStats(
            prompt_tokens=active.prompt_tokens,
            completion_tokens=item.num_generated,
            prompt_eval_seconds=active.prompt_eval_seconds,
            eval_seconds=active.eval_seconds,
            cached_tokens=item.cached,
            queue_seconds=(active.admitted or active.arrived) - active.arrived,
            stop_sequence=active.stops.matched,
            context=tuple(active.tokens or ()),
            draft_tokens=item.drafted,
            accepted_tokens=item.accepted,
            reasoning_tokens=active.reasoning.count if active.reasoning is not None else 0,
            dropped_tokens=active.dropped,
            prompt_logprobs=self._prompt_logprobs(active),
        )
        events: list[tuple[str, Event]] = [(item.request_id, TextDelta(tail, 0))] if tail else []
        events.append((item.request_id, Finished(item.reason, stats)))
        return events

    def _contain(self, plan: StepPlan, exc: SlmError) -> list[tuple[str, Event]]:
        """A failed step fails only the request that caused it. The KV cache is lost, so
        every running request replays what it held (its answer so far is kept). A step of one
        request names the culprit; otherwise each request of the step becomes a suspect and
        runs alone until it either gets a token (innocent) or fails (the culprit)."""
        self.scheduler.rewind()
        involved = list(
            dict.fromkeys([*(c.request_id for c in plan.prefill), *(d.request_id for d in plan.decode)])
        )
        log.warning(
            "a decode step of %d request(s) failed (%s); the running requests replay their cache%s",
            len(involved),
            exc,
            "" if len(involved) > 1 else " and the request that failed alone is ended",
        )
        if len(involved) > 1:
            self._suspects = involved + [r for r in self._suspects if r not in involved]
            return []
        culprit = involved[0]
        if culprit in self._suspects:
            self._suspects.remove(culprit)
        self.scheduler.finish_requests([culprit], "cancelled")
        return [self._fail(culprit, exc)]

    def stream(self, request: EngineRequest, governor: ThreadGovernor | None = None) -> _EventIterator:
        """Run one request in this process, yielding its events (used by slmkit.load);
        ``governor`` adapts the threads between steps, as the worker's loop does."""
        return _EventIterator(self, request, governor)


class _EventIterator:
    """Drives EngineCore until one request finishes, yielding its events."""

    def __init__(
        self, core: EngineCore, request: EngineRequest, governor: ThreadGovernor | None = None
    ) -> None:
        self.core = core
        self.governor = governor
        self.request_id = request.request_id
        core.add_request(request)
        self._queue: list[Event] = []
        self._done = False

    def __iter__(self) -> _EventIterator:
        return self

    def __next__(self) -> Event:
        while not self._queue:
            if self._done:
                raise StopIteration
            if self.governor is not None:
                self.governor.adjust(self.core.backend)
            for request_id, event in self.core.step():
                if request_id == self.request_id:
                    self._queue.append(event)
            if self.governor is not None and self.core.stalled:
                self.governor.stalled()
            if not self.core.has_work and not self._queue:
                self._done = True
        event = self._queue.pop(0)
        if isinstance(event, Finished | Failed):
            self._done = True
        return event

    def end(self) -> None:
        """Stop the request now; its Finished event (reason "cancelled", the stats so far)
        comes next, as a worker's ``abort`` sends it."""
        if not self._done:
            self._queue += [e for rid, e in self.core.abort(self.request_id) if rid == self.request_id]

    def close(self) -> None:
        if not self._done:
            self.core.abort(self.request_id)
            self._done = True
