"""The llama-cpp-python backend: the only module in slmkit that imports ``llama_cpp``.

It drives one llama.cpp context through the low-level API: ``n_parallel`` sequences (slots)
with their own KV cells (``kv_unified`` off, so each slot has ``n_ctx`` cells; with
SLM_KV_UNIFIED one pool of ``n_ctx x n_parallel`` cells, each slot still capped at ``n_ctx``
by the scheduler, so the pool can never run out; with SLM_KV_POOL a smaller shared pool,
which the scheduler keeps every slot's tokens within), one
``llama_decode`` per step over a batch built from the scheduler's plan, and one sampler
chain per request. Errors from llama_cpp become slmkit errors here.
"""

from __future__ import annotations

import ctypes
import functools
import random
import re
from typing import Any

from slmkit.engine.backends import clean_message, score_row
from slmkit.engine.backends.llama_open import cpu_backend, high_level, open_context, open_model
from slmkit.engine.backends.media import Projector
from slmkit.engine.plan import PrefillChunk, StepPlan, StepResult, is_media
from slmkit.errors import EngineError, InvalidRequest, LimitExceeded, ModelLoadError
from slmkit.hardware import cpu_budget
from slmkit.pipe import Image, LoadSpec, ModelInfo, SamplingParams

EMBED_CTX = 1024  # tokens per embedding input, at most
FLASH_ATTN = {"auto": -1, "off": 0, "on": 1}  # SLM_FLASH_ATTENTION -> LLAMA_FLASH_ATTN_TYPE_*
KV_GGML_TYPE = {"f16": 1, "q8_0": 8, "q4_0": 2}  # SLM_KV_CACHE_TYPE -> GGML_TYPE_*
MAX_TOP_LOGPROBS = 20  # OpenAI's limit for top_logprobs


class LlamaBackend:
    """Backend (see engine/core.py) over llama.cpp's C API."""

    speculative = True
    adaptive_threads = True
    shares_prefixes = True

    def __init__(self, spec: LoadSpec) -> None:
        import llama_cpp
        from llama_cpp import _internals, _logger

        _logger.set_verbose(False)  # llama.cpp's own log: errors only
        self._lib = llama_cpp
        self._internals = _internals
        self.spec = spec
        self._threads = spec.n_threads or cpu_budget()
        self.model = open_model(spec.model_path)
        train_ctx = int(self.model.n_ctx_train())
        n_ctx = min(spec.n_ctx, train_ctx) if train_ctx > 0 else spec.n_ctx
        n_parallel = max(1, spec.n_parallel)
        # SLM_KV_POOL: fewer cells than slots x context, shared (the scheduler keeps within it)
        pool = spec.kv_pool if 0 < spec.kv_pool < n_ctx * n_parallel else 0
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = pool or n_ctx * n_parallel
        params.n_batch = params.n_ubatch = spec.n_batch
        params.n_seq_max = n_parallel
        params.n_threads = params.n_threads_batch = self._threads
        params.kv_unified = spec.kv_unified or bool(pool)
        params.swa_full = spec.swa_full
        params.flash_attn_type = FLASH_ATTN[spec.flash_attention]
        params.type_k = params.type_v = KV_GGML_TYPE[spec.kv_cache_type]
        self.ctx = open_context(self.model, params)
        self._adapters: list[Any] = []
        self._apply_adapters(spec.adapters)
        self.projector: Projector | None = None
        if spec.projector:
            self.projector = Projector(
                spec.projector, self.model.model, self._threads, spec.projector_type,
                lambda text: len(self.tokenize(text, add_bos=False)) == 1,
            )  # fmt: skip
        self.batch = _internals.LlamaBatch(n_tokens=spec.n_batch, embd=0, n_seq_max=1, verbose=False)
        self._vocab = self.model.vocab
        self._ctypes = ctypes
        self._piece_buf = ctypes.create_string_buffer(64)
        self._pieces: dict[int, bytes] = {}  # token -> text bytes, filled as tokens appear
        self.bos_token = self._special_text(self.model.token_bos())
        self.eos_token = self._special_text(self.model.token_eos())
        self.add_bos = bool(self.model.add_bos_token())
        pre, suf, mid = (
            int(f(self._vocab))
            for f in (
                llama_cpp.llama_vocab_fim_pre,
                llama_cpp.llama_vocab_fim_suf,
                llama_cpp.llama_vocab_fim_mid,
            )
        )
        self.fim: tuple[int, int, int] | None = (pre, suf, mid) if min(pre, suf, mid) >= 0 else None
        cells = int(llama_cpp.llama_n_ctx(self.ctx.ctx))  # the pool as llama.cpp padded it
        self._unified = bool(params.kv_unified)
        self.info = ModelInfo(
            n_ctx=min(n_ctx, cells) if params.kv_unified else int(llama_cpp.llama_n_ctx_seq(self.ctx.ctx)),
            n_ctx_train=train_ctx,
            n_embd=int(self.model.n_embd()),
            n_vocab=int(self.model.n_vocab()),
            n_parallel=n_parallel,
            kv_cells=cells if pool else 0,
            n_batch=spec.n_batch,
            n_threads=self._threads,
            extra={
                "bos_token": self.bos_token or None,
                "eos_token": self.eos_token or None,
                "cpu_backend": cpu_backend(),
            },
        )
        # Sliding-window layers keep only their window (swa_full off, as llama-server): a slot
        # can then be cut back and resumed only where the window before the cut is still held.
        n_swa = int(llama_cpp.llama_model_n_swa(self.model.model))
        self._window = n_swa if n_swa > 0 and not spec.swa_full else 0
        self._samplers: dict[str, Any] = {}
        self._grammars: dict[str, Any] = {}  # JSON schema text -> LlamaGrammar
        self._logprobs: dict[str, int] = {}  # request id -> how many top tokens to report
        self._prompt_top: dict[str, int] = {}  # the same for its prompt's tokens (prompt scoring)
        self._embedder: Any = None

    def _apply_adapters(self, paths: tuple[str, ...]) -> None:
        lib = self._lib
        for path in paths:
            adapter = lib.llama_adapter_lora_init(self.model.model, path.encode())
            if not adapter:
                self.close()
                raise ModelLoadError("llama.cpp could not load a LoRA adapter (is it for this model?)")
            self._adapters.append(adapter)
        if self._adapters:
            n = len(self._adapters)
            handles = (lib.llama_adapter_lora_p_ctypes * n)(*self._adapters)
            scales = (ctypes.c_float * n)(*([1.0] * n))
            if lib.llama_set_adapters_lora(self.ctx.ctx, handles, n, scales) != 0:
                self.close()
                raise ModelLoadError("llama.cpp could not apply the LoRA adapters")

    def _piece(self, token: int, special: bool) -> bytes:
        buf = self._piece_buf
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:  # a piece longer than the buffer: grow it and ask again
            self._piece_buf = buf = self._ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[: max(n, 0)]

    def _special_text(self, token: int) -> str:
        return self._piece(token, True).decode("utf-8", errors="replace") if token >= 0 else ""

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        try:
            return list(self.model.tokenize(text.encode("utf-8"), add_bos, True))
        except RuntimeError as exc:
            raise EngineError(f"tokenization failed: {clean_message(exc)}") from exc

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece(token, False)
        return piece

    def start(self, request_id: str, sampling: SamplingParams) -> None:
        """Build the request's sampler chain (llama-cpp-python's order)."""
        s = sampling
        chain = self._internals.LlamaSampler()
        if s.logit_bias:
            bad = [t for t, _ in s.logit_bias if not 0 <= t < self.info.n_vocab]
            if bad:
                chain.close()
                raise InvalidRequest(
                    f"logit_bias: token {bad[0]} is not in the vocabulary (0-{self.info.n_vocab - 1})"
                )
            chain.add_logit_bias(self.info.n_vocab, dict(s.logit_bias))
        if s.json_schema is not None:  # the grammar masks every token the schema forbids
            try:
                chain.add_grammar(self.model, self._grammar(s.json_schema))
            except InvalidRequest:
                chain.close()
                raise
        neutral = s.repeat_penalty == 1.0 and s.presence_penalty == 0.0 and s.frequency_penalty == 0.0
        if not neutral:
            chain.add_penalties(
                self.info.n_vocab, s.repeat_last_n, s.repeat_penalty, s.frequency_penalty, s.presence_penalty
            )
        if s.temperature <= 0:
            chain.add_greedy()
        else:
            if s.top_k > 0:
                chain.add_top_k(s.top_k)
            if s.top_p < 1.0:
                chain.add_top_p(s.top_p, 1)
            if s.min_p > 0.0:
                chain.add_min_p(s.min_p, 1)
            chain.add_temp(s.temperature)
            chain.add_dist(s.seed if s.seed is not None else random.randint(0, 2**31 - 1))
        self._samplers[request_id] = chain
        if s.logprobs is not None:
            self._logprobs[request_id] = min(max(s.logprobs, 0), MAX_TOP_LOGPROBS)
        if s.prompt_logprobs is not None:
            self._prompt_top[request_id] = min(max(s.prompt_logprobs, 0), MAX_TOP_LOGPROBS)

    def _grammar(self, schema: str) -> Any:
        """llama-cpp-python's GBNF for a checked JSON schema, cached by schema text."""
        grammar = self._grammars.get(schema)
        if grammar is None:
            from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

            try:
                gbnf = _no_control_chars(json_schema_to_gbnf(schema))
                grammar = LlamaGrammar.from_string(gbnf, verbose=False)
            except (AssertionError, KeyError, ValueError, TypeError, RecursionError) as exc:
                raise InvalidRequest(
                    f"the JSON schema cannot be turned into a grammar: {clean_message(exc)}"
                ) from exc
            if len(self._grammars) > 64:
                self._grammars.clear()
            self._grammars[schema] = grammar
        return grammar

    def set_threads(self, n: int) -> None:
        """Decode with ``n`` threads from the next step on (prompt batches too)."""
        self._threads = n
        self._lib.llama_set_n_threads(self.ctx.ctx, n, n)
        if self._embedder is not None:
            self._lib.llama_set_n_threads(self._embedder.ctx, n, n)

    def tokenize_media(
        self, request_id: str, text: str, images: tuple[Image, ...], add_bos: bool, offset: int
    ) -> list[int]:
        """``text`` with its images (one MEDIA_MARKER each) as tokens, each image a run of
        placeholders (backends/media.py); held for the request until release."""
        if self.projector is None:
            raise InvalidRequest("images: this model does not take images (it has no vision projector)")
        return self.projector.tokenize(request_id, text, images, add_bos, offset)

    def release(self, request_id: str) -> None:
        if self.projector is not None:
            self.projector.forget(request_id)
        self._logprobs.pop(request_id, None)
        self._prompt_top.pop(request_id, None)
        chain = self._samplers.pop(request_id, None)
        if chain is not None:
            chain.close()

    def execute(self, plan: StepPlan) -> StepResult:
        lib, ctx = self._lib, self.ctx.ctx
        memory = self.ctx.memory
        for slot, keep in plan.trims:
            lib.llama_memory_seq_rm(memory, slot, keep, -1)
        for source, target, keep in plan.copies:  # another slot's prefix (a shared system prompt)
            lib.llama_memory_seq_rm(memory, target, -1, -1)
            if self._unified:  # one pool: the target shares the source's cells, nothing is copied
                lib.llama_memory_seq_cp(memory, source, target, 0, keep)
            else:  # a cache per slot: llama.cpp copies a whole slot's buffer, then the rest goes
                lib.llama_memory_seq_cp(memory, source, target, -1, -1)
                lib.llama_memory_seq_rm(memory, target, keep, -1)
        b = self.batch.batch
        n = 0
        outputs: dict[str, int] = {}  # request id -> batch index whose logits it samples
        drafts: dict[str, tuple[int, int, tuple[int, ...]]] = {}  # id -> (slot, position, draft)
        scoring: list[tuple[PrefillChunk, int]] = []  # prompt-scored chunks, batch index of the first
        # Tokens go in by slot order: with one KV stream per slot llama.cpp splits a batch
        # whose sequence ids are out of order into several micro-batches (half the speed).
        for item in sorted(plan.decode, key=lambda d: d.slot):
            outputs[item.request_id] = n
            for i, token in enumerate((item.token, *item.draft)):
                self._put(b, n, token, item.position + i, item.slot, True)
                n += 1
            if item.draft:
                drafts[item.request_id] = (item.slot, item.position, item.draft)
        for chunk in sorted(plan.prefill, key=lambda c: c.slot):
            skip = self._images(chunk)  # an image run first: encoded into the cache now
            last = len(chunk.tokens) - 1
            if chunk.targets:
                scoring.append((chunk, n))
            for i, token in enumerate(chunk.tokens[skip:], start=skip):
                self._put(
                    b,
                    n,
                    token,
                    chunk.start + i,
                    chunk.slot,
                    (chunk.sample and i == last) or i < len(chunk.targets),
                )
                n += 1
            if chunk.sample:
                outputs[chunk.request_id] = n - 1
        b.n_tokens = n
        code = lib.llama_decode(ctx, b) if n else 0
        if code != 0:
            lib.llama_memory_clear(self.ctx.memory, True)
            raise EngineError(f"llama.cpp failed to decode a batch of {n} tokens (code {code})")
        tokens: dict[str, int] = {}
        accepted: dict[str, tuple[int, ...]] = {}
        for rid, i in outputs.items():
            chain = self._samplers[rid].sampler
            token = int(lib.llama_sampler_sample(chain, ctx, i))
            if rid in drafts:
                slot, position, draft = drafts[rid]
                token, kept = self._verify(chain, i, token, draft)
                if kept:
                    accepted[rid] = draft[:kept]
                if kept < len(draft):  # the rejected guesses' KV cells go
                    lib.llama_memory_seq_rm(self.ctx.memory, slot, position + 1 + kept, -1)
            tokens[rid] = token
        eog = frozenset(rid for rid, t in tokens.items() if lib.llama_vocab_is_eog(self._vocab, t))
        scored = {
            rid: self._score(i, tokens[rid], self._logprobs[rid])
            for rid, i in outputs.items()
            if rid in self._logprobs
        }
        prompt_scores = {
            chunk.request_id: tuple(
                (
                    chunk.start + 1 + i,
                    target,
                    *self._score(first + i, target, self._prompt_top[chunk.request_id]),
                )
                for i, target in enumerate(chunk.targets)
            )
            for chunk, first in scoring
        }
        return StepResult(
            tokens=tokens,
            end_of_generation=eog,
            logprobs=scored,
            accepted=accepted,
            prompt_logprobs=prompt_scores,
            floors=self._floors(plan) if self._window else {},
        )

    def _floors(self, plan: StepPlan) -> dict[int, int]:
        """For each slot the step wrote: the shortest prefix it can be cut back to and go on
        from. Resuming at position p attends back to p - window + 1, so that must be held."""
        memory, out = self.ctx.memory, {}
        for slot in {*(d.slot for d in plan.decode), *(c.slot for c in plan.prefill)}:
            first = int(self._lib.llama_memory_seq_pos_min(memory, slot))
            out[slot] = 0 if first <= 0 else first + self._window - 1
        return out

    def _verify(self, chain: Any, index: int, token: int, draft: tuple[int, ...]) -> tuple[int, int]:
        """Speculative decoding's check: ``token`` was sampled at ``index`` (the sequence's
        real next token); while it equals the next draft token, that guess was right and the
        token after it is sampled from the logits the guess produced (the chain has accepted
        every token before it, so each is drawn exactly as plain decoding would). Returns the
        last sampled token and how many draft tokens were confirmed before it."""
        lib, kept = self._lib, 0
        while kept < len(draft) and token == draft[kept] and not lib.llama_vocab_is_eog(self._vocab, token):
            kept += 1
            token = int(lib.llama_sampler_sample(chain, self.ctx.ctx, index + kept))
        return token, kept

    def kv_span(self, slot: int) -> tuple[int, int]:
        """The first and last position held in ``slot``'s KV cells ((-1, -1) when empty):
        a diagnostic of the invariant that a slot holds exactly what the scheduler says."""
        memory = self.ctx.memory
        return (
            int(self._lib.llama_memory_seq_pos_min(memory, slot)),
            int(self._lib.llama_memory_seq_pos_max(memory, slot)),
        )

    def _score(self, index: int, token: int, top: int) -> tuple[float, tuple[tuple[int, float], ...]]:
        """score_row of the raw logits at batch ``index``."""
        import numpy as np

        pointer = self._lib.llama_get_logits_ith(self.ctx.ctx, index)
        return score_row(np.ctypeslib.as_array(pointer, shape=(self.info.n_vocab,)), token, top)

    def _images(self, chunk: PrefillChunk) -> int:
        """Encode the image run a prefill chunk starts with (the scheduler never splits one,
        and starts a chunk at each); how many of its tokens that covered."""
        if not chunk.tokens or not is_media(chunk.tokens[0]):
            return 0
        if self.projector is None:
            raise EngineError("an image placeholder reached a model without a projector")
        run = next((i for i, t in enumerate(chunk.tokens) if t != chunk.tokens[0]), len(chunk.tokens))
        self.projector.evaluate(chunk.request_id, chunk.start, self.ctx.ctx, chunk.slot, self.spec.n_batch)
        return run

    @staticmethod
    def _put(b: Any, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = logits

    @functools.cached_property
    def pooling(self) -> int:
        """How embeddings pool: the model's own ``<arch>.pooling_type`` (mean, CLS, last
        token: sentence-embedding models say which they were trained with; rank: a
        cross-encoder's classifier score), else mean."""
        lib = self._lib
        if self.spec.rerank:  # the format's decision (formats/gguf.py): a GGUF may not say rank
            return int(lib.LLAMA_POOLING_TYPE_RANK)
        meta = self.model.metadata()
        value = meta.get(f"{meta.get('general.architecture', '')}.pooling_type", "")
        kind = int(value) if value.isdigit() else lib.LLAMA_POOLING_TYPE_MEAN
        pooled = (lib.LLAMA_POOLING_TYPE_MEAN, lib.LLAMA_POOLING_TYPE_CLS, lib.LLAMA_POOLING_TYPE_LAST)
        if kind not in (*pooled, lib.LLAMA_POOLING_TYPE_RANK):
            kind = lib.LLAMA_POOLING_TYPE_MEAN  # NONE (per-token vectors): one vector per input instead
        return int(kind)

    def _embedding_context(self) -> Any:
        # A second context in embedding mode, made on first use. Every input must fit in one
        # micro-batch, whose compute buffers grow with its size: EMBED_CTX bounds both.
        if self._embedder is None:
            limit = self._embed_limit()
            try:
                self._embedder = high_level(
                    model_path=self.spec.model_path,
                    n_ctx=limit,
                    n_batch=limit,
                    n_ubatch=limit,
                    n_threads=self._threads,
                    embedding=True,
                    pooling_type=self.pooling,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelLoadError(
                    f"could not load the model for embeddings: {clean_message(exc)}"
                ) from exc
        return self._embedder

    def _embed_limit(self) -> int:
        """Tokens per embedding input or rerank pair: at most EMBED_CTX, the context, and the
        trained context (an encoder's learned positions end there)."""
        return min(self.info.n_ctx, self.info.n_ctx_train or self.info.n_ctx, EMBED_CTX)

    def _check_length(self, n: int, what: str) -> None:
        limit = self._embed_limit()
        if n > limit:
            raise LimitExceeded(f"{what} is {n} tokens, more than the embedding limit of {limit}")

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Pooled (the model's way, see pooling), L2-normalized embeddings, and the number of
        tokens read."""
        if self.pooling == self._lib.LLAMA_POOLING_TYPE_RANK:
            raise InvalidRequest(
                "this model is a cross-encoder reranker: it scores pairs (/v1/rerank), not texts"
            )
        embedder = self._embedding_context()
        count = 0
        for text in texts:
            n = len(embedder.tokenize(text.encode("utf-8"), add_bos=True, special=False))
            self._check_length(n, "input: an input")
            count += n
        try:
            vectors = embedder.embed(texts, normalize=True, truncate=False)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"embedding failed: {clean_message(exc)}") from exc
        return [list(map(float, v)) for v in vectors], count

    def rank(self, pairs: list[tuple[str, str]], max_doc_tokens: int = 0) -> tuple[list[float], int]:
        """A cross-encoder's raw relevance score (its classifier's first output) for each
        (query, document) pair, and the number of tokens read. Each pair is one sequence, laid
        out as llama.cpp's server does: the GGUF's ``rerank`` template when it has one, else
        [BOS] query [EOS] [SEP] document [EOS] as the vocabulary adds them. The texts are
        tokenized without special tokens, so a document cannot forge the layout."""
        if self.pooling != self._lib.LLAMA_POOLING_TYPE_RANK:
            raise InvalidRequest("this model has no rank pooling: it is not a cross-encoder")
        embedder = self._embedding_context()
        lib = self._lib
        sequences = [
            self._pair_tokens(embedder, query, document, max_doc_tokens) for query, document in pairs
        ]
        for tokens in sequences:
            self._check_length(len(tokens), "documents: a query and document pair")
        scores: list[float] = []
        try:
            for tokens in sequences:
                embedder._batch.reset()
                embedder._batch.add_sequence(tokens, 0, True)
                embedder._ctx.kv_cache_clear()
                embedder._ctx.decode(embedder._batch)
                pointer = lib.llama_get_embeddings_seq(embedder._ctx.ctx, 0)
                if not pointer:
                    raise EngineError("the model gave no rank score")
                scores.append(float(pointer[0]))
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"rerank failed: {clean_message(exc)}") from exc
        finally:
            embedder._batch.reset()
        return scores, sum(len(t) for t in sequences)

    @functools.cached_property
    def _rerank_template(self) -> str | None:
        """The GGUF's ``rerank`` template (Qwen3-Reranker style), read once."""
        return self.model.metadata().get("tokenizer.chat_template.rerank") or None

    def _pair_tokens(self, embedder: Any, query: str, document: str, max_doc_tokens: int = 0) -> list[int]:
        def text(s: str) -> list[int]:
            return list(embedder.tokenize(s.encode("utf-8"), add_bos=False, special=False))

        def doc() -> list[int]:
            tokens = text(document)
            return tokens[:max_doc_tokens] if max_doc_tokens > 0 else tokens

        template = self._rerank_template
        if template:
            tokens: list[int] = []
            for part in re.split(r"(\{query\}|\{document\})", template):
                if part == "{query}":
                    tokens += text(query)
                elif part == "{document}":
                    tokens += doc()
                elif part:
                    tokens += embedder.tokenize(part.encode("utf-8"), add_bos=False, special=True)
            return tokens
        lib = self._lib
        vocab = lib.llama_model_get_vocab(self.model.model)
        eos = lib.llama_vocab_eos(vocab)
        if eos == lib.LLAMA_TOKEN_NULL:
            eos = lib.llama_vocab_sep(vocab)
        tokens = [lib.llama_vocab_bos(vocab)] if lib.llama_vocab_get_add_bos(vocab) else []
        tokens += text(query)
        if lib.llama_vocab_get_add_eos(vocab):
            tokens.append(eos)
        if lib.llama_vocab_get_add_sep(vocab):
            tokens.append(lib.llama_vocab_sep(vocab))
        tokens += doc()
        if lib.llama_vocab_get_add_eos(vocab):
            tokens.append(eos)
        return tokens

    def close(self) -> None:
        for rid in list(self._samplers):
            self.release(rid)
        if getattr(self, "_embedder", None) is not None:
            self._embedder.close()
        projector = getattr(self, "projector", None)
        if projector is not None:
            projector.close()  # before the model it was made for
        for name in ("batch", "ctx"):
            if hasattr(self, name):
                getattr(self, name).close()
        for adapter in getattr(self, "_adapters", []):
            self._lib.llama_adapter_lora_free(adapter)
        self._adapters = []
        self.model.close()


# llama-cpp-python's converter lets JSON strings hold raw control characters (a newline
# inside a string), which no JSON parser accepts; llama.cpp's own converter excludes them.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def _no_control_chars(gbnf: str) -> str:
    return gbnf.replace(_LOOSE_CHAR, _JSON_CHAR)
