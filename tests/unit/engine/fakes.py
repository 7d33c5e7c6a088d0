"""A hand-written Backend for EngineCore tests: a scripted token stream per request."""

from __future__ import annotations

import dataclasses

from slmkit.engine.scheduler import StepPlan, StepResult
from slmkit.errors import EngineError
from slmkit.pipe import MEDIA_MARKER, Image, ModelInfo, SamplingParams

EOS = 0


class FakeBackend:
    """Tokens are byte values (+1); the reply to every prompt is ``script`` then EOS."""

    def __init__(
        self,
        script: bytes = b"Hello world",
        n_ctx: int = 64,
        fail_after: int | None = None,
        n_parallel: int = 1,
        n_batch: int = 512,
        poison: bytes | None = None,
    ) -> None:
        self.info = ModelInfo(
            n_ctx=n_ctx, n_ctx_train=n_ctx, n_embd=4, n_vocab=257, n_parallel=n_parallel, n_batch=n_batch
        )
        self.bos_token = "<s>"
        self.eos_token = "</s>"
        self.add_bos = False
        self.fim: tuple[int, int, int] | None = (250, 251, 252)
        self.speculative = True
        self.adaptive_threads = True
        self.shares_prefixes = False
        self.script = list(script)
        self.positions: dict[str, int] = {}
        self.released: list[str] = []
        self.plans: list[StepPlan] = []
        self.sampling: dict[str, SamplingParams] = {}
        self.tokenized: list[str] = []  # every text tokenized, in order
        self.media: list[tuple[str, str, tuple[Image, ...]]] = []  # (request id, text, images)
        self.fail_after = fail_after  # raise EngineError once a sequence has this many tokens
        # raise EngineError for any batch holding this byte's token (a request's bad input)
        self.poison = None if poison is None else poison[0] + 1

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        self.tokenized.append(text)
        return [b + 1 for b in text.encode()]

    def tokenize_media(
        self, request_id: str, text: str, images: tuple[Image, ...], add_bos: bool, offset: int
    ) -> list[int]:
        """Each image a run of 4 placeholders from its digest; every call recorded."""
        self.media.append((request_id, text, images))
        out: list[int] = []
        for i, piece in enumerate(text.split(MEDIA_MARKER)):
            out += self.tokenize(piece, add_bos=False)
            if i < len(images):
                out += [-(1 + int(images[i].digest[:8], 16))] * 4
        return out

    def token_bytes(self, token: int) -> bytes:
        return b"" if token == EOS else bytes([token - 1])

    def start(self, request_id: str, sampling: SamplingParams) -> None:
        self.positions[request_id] = 0
        self.sampling[request_id] = sampling

    def execute(self, plan: StepPlan) -> StepResult:
        self.plans.append(plan)
        if self.poison is not None and any(self.poison in c.tokens for c in plan.prefill):
            raise EngineError("llama.cpp failed to decode: simulated bad input")
        tokens, eog = {}, set()
        accepted: dict[str, tuple[int, ...]] = {}
        drafts = {d.request_id: d.draft for d in plan.decode}
        for request_id in plan.sampled:
            token = self._next(request_id)
            kept: list[int] = []  # speculation: each guess that equals the true token is kept
            for guess in drafts.get(request_id, ()):
                if token != guess or token == EOS:
                    break
                kept.append(token)
                token = self._next(request_id)
            if kept:
                accepted[request_id] = tuple(kept)
            tokens[request_id] = token
            if token == EOS:
                eog.add(request_id)
        # logprobs, when asked: the token at -0.5 nats, alternatives after it at -1, -2, ...
        scored = {
            rid: (-0.5, tuple((t % 250 + 2, -1.0 - k) for k, t in enumerate(range(token, token + n))))
            for rid, token in tokens.items()
            if (n := self.sampling[rid].logprobs) is not None
        }
        # prompt scoring: each prompt token at -0.25 nats, the likeliest alternative at -0.1
        prompt = {
            c.request_id: tuple(
                (c.start + 1 + i, t, -0.25, ((t % 250 + 2, -0.1),)) for i, t in enumerate(c.targets)
            )
            for c in plan.prefill
            if c.targets
        }
        return StepResult(
            tokens=tokens,
            end_of_generation=frozenset(eog),
            logprobs=scored,
            accepted=accepted,
            prompt_logprobs=prompt,
        )

    def _next(self, request_id: str) -> int:
        i = self.positions[request_id]
        if self.fail_after is not None and i >= self.fail_after:
            raise EngineError("llama.cpp failed to decode: simulated")
        self.positions[request_id] = i + 1
        return self.script[i] + 1 if i < len(self.script) else EOS

    def release(self, request_id: str) -> None:
        self.released.append(request_id)

    def set_threads(self, n: int) -> None:
        self.info = dataclasses.replace(self.info, n_threads=n)

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        return [[1.0, 0.0, 0.0, 0.0] for _ in texts], sum(len(t) for t in texts)

    def rank(self, pairs: list[tuple[str, str]], max_doc_tokens: int = 0) -> tuple[list[float], int]:
        """A stand-in cross-encoder: a pair scores the number of the query's words in the document."""
        scores = [float(len(set(q.lower().split()) & set(d.lower().split()))) for q, d in pairs]
        return scores, sum(len(q) + len(d) for q, d in pairs)

    def close(self) -> None:
        pass

    def prompt_of(self, request_id: str) -> str:
        """The prompt text this request's prefill chunks carried."""
        tokens = [t for p in self.plans for c in p.prefill if c.request_id == request_id for t in c.tokens]
        return bytes(t - 1 for t in tokens).decode()
