"""The llama-cpp-python backend: the only module in slmkit that imports ``llama_cpp``.

It drives one llama.cpp context with one sequence at a time (the high-level ``Llama``
object keeps one KV cache), reusing the longest common prefix of consecutive prompts.
Errors from llama_cpp become slmkit errors here (ModelLoadError, EngineError).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

from slmkit.engine.scheduler import StepPlan, StepResult
from slmkit.engine.types import ModelInfo, SamplingParams
from slmkit.errors import EngineError, LimitExceeded, ModelLoadError

EMBED_CTX = 1024  # tokens per embedding input, at most


@dataclass(frozen=True)
class LoadSpec:
    """How to load a model; picklable, sent to the worker process."""

    model_path: str
    n_ctx: int = 4096  # wanted context; capped at the model's trained context
    n_threads: int = 0  # 0 = physical cores
    n_batch: int = 512
    seed: int = 0


def default_threads() -> int:
    try:
        import psutil

        return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
    except ImportError:
        return os.cpu_count() or 1


@dataclass
class _Sequence:
    prompt: list[int]
    sampling: SamplingParams
    sampler: Any = None
    last_token: int = -1
    cached: int = 0  # prompt tokens reused from the KV cache


class LlamaBackend:
    """Backend (see engine/core.py) over ``llama_cpp.Llama``."""

    def __init__(self, spec: LoadSpec) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.spec = spec
        threads = spec.n_threads or default_threads()
        try:
            self.llm = llama_cpp.Llama(
                model_path=spec.model_path,
                n_ctx=spec.n_ctx,
                n_batch=spec.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                seed=spec.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp could not load the model: {_clean(exc)}") from exc
        train_ctx = int(self.llm._model.n_ctx_train())
        if spec.n_ctx > train_ctx > 0:
            self.llm.close()
            self.llm = llama_cpp.Llama(
                model_path=spec.model_path,
                n_ctx=train_ctx,
                n_batch=spec.n_batch,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        self._threads = threads
        self._embedder: Any = None
        self._vocab = self.llm._model.vocab
        self.bos_token = self._special_text(self.llm.token_bos())
        self.eos_token = self._special_text(self.llm.token_eos())
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.info = ModelInfo(
            n_ctx=int(self.llm.n_ctx()),
            n_ctx_train=train_ctx,
            n_embd=int(self.llm.n_embd()),
            n_vocab=int(self.llm.n_vocab()),
        )
        self._seqs: dict[str, _Sequence] = {}

    def _special_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        try:
            return list(self.llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True))
        except RuntimeError as exc:
            raise EngineError(f"tokenization failed: {_clean(exc)}") from exc

    def token_bytes(self, token: int) -> bytes:
        return bytes(self.llm.detokenize([token], special=False))

    def start(self, request_id: str, prompt: list[int], sampling: SamplingParams) -> None:
        self._seqs[request_id] = _Sequence(prompt, sampling)

    def cached_tokens(self, request_id: str) -> int:
        seq = self._seqs.get(request_id)
        return seq.cached if seq else 0

    def release(self, request_id: str) -> None:
        self._seqs.pop(request_id, None)

    def execute(self, plan: StepPlan) -> StepResult:
        if len(plan.prefill) + len(plan.decode) > 1:
            raise EngineError("this backend decodes one sequence per step")
        tokens: dict[str, int] = {}
        eog: set[str] = set()
        try:
            for request_id in plan.prefill:
                seq = self._seqs[request_id]
                self._prefill(seq)
                tokens[request_id] = seq.last_token = self._sample(seq)
            for request_id in plan.decode:
                seq = self._seqs[request_id]
                self.llm.eval([seq.last_token])
                tokens[request_id] = seq.last_token = self._sample(seq)
        except RuntimeError as exc:
            self.llm.reset()  # type: ignore[no-untyped-call]
            raise EngineError(f"llama.cpp failed to decode: {_clean(exc)}") from exc
        for request_id, token in tokens.items():
            if self._llama_cpp.llama_vocab_is_eog(self._vocab, token):
                eog.add(request_id)
        return StepResult(tokens=tokens, end_of_generation=frozenset(eog))

    def _prefill(self, seq: _Sequence) -> None:
        """Evaluate the prompt, keeping the longest prefix already in the KV cache."""
        llm = self.llm
        reuse = 0
        if llm.n_tokens > 0:
            cached = llm.input_ids[: llm.n_tokens]
            for a, b in zip(cached, seq.prompt, strict=False):
                if a != b:
                    break
                reuse += 1
            reuse = min(reuse, len(seq.prompt) - 1)  # always evaluate >= 1 token for logits
        if reuse > 0 and llm._ctx.kv_cache_seq_rm(-1, reuse, -1):
            llm.n_tokens = reuse
        else:
            reuse = 0
            llm.reset()  # type: ignore[no-untyped-call]
        seq.cached = reuse
        llm.eval(seq.prompt[reuse:])
        s = seq.sampling
        llm.set_seed(s.seed if s.seed is not None else random.randint(0, 2**31 - 1))
        llm.last_n_tokens_size = s.repeat_last_n
        seq.sampler = llm._init_sampler(
            top_k=s.top_k,
            top_p=s.top_p,
            min_p=s.min_p,
            temp=s.temperature,
            repeat_penalty=s.repeat_penalty,
            frequency_penalty=s.frequency_penalty,
            presence_penalty=s.presence_penalty,
        )

    def _sample(self, seq: _Sequence) -> int:
        return int(seq.sampler.sample(self.llm._ctx, -1))

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Mean-pooled, L2-normalized embeddings, and the number of tokens read."""
        # A second context in embedding mode, made on first use. Every input must fit in one
        # micro-batch, whose compute buffers grow with its size: EMBED_CTX bounds both.
        limit = min(self.info.n_ctx, EMBED_CTX)
        if self._embedder is None:
            llama_cpp = self._llama_cpp
            try:
                self._embedder = llama_cpp.Llama(
                    model_path=self.spec.model_path,
                    n_ctx=limit,
                    n_batch=limit,
                    n_ubatch=limit,
                    n_threads=self._threads,
                    embedding=True,
                    pooling_type=llama_cpp.LLAMA_POOLING_TYPE_MEAN,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelLoadError(f"could not load the model for embeddings: {_clean(exc)}") from exc
        count = 0
        for text in texts:
            n = len(self._embedder.tokenize(text.encode("utf-8"), add_bos=True, special=False))
            if n > limit:
                raise LimitExceeded(
                    f"input: an input is {n} tokens, more than the embedding limit of {limit}"
                )
            count += n
        try:
            vectors = self._embedder.embed(texts, normalize=True, truncate=False)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"embedding failed: {_clean(exc)}") from exc
        return [list(map(float, v)) for v in vectors], count

    def close(self) -> None:
        for llm in (self._embedder, self.llm):
            if llm is not None:
                llm.close()


def _clean(exc: BaseException) -> str:
    """An error message without filesystem paths (they may name the user or the store)."""
    import re

    text = str(exc) or type(exc).__name__
    return re.sub(r"(/[^\s:'\"]+)+", "<path>", text)[:300]
