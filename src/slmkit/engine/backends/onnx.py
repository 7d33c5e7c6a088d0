"""The ONNX Runtime backend: serves ONNX Runtime GenAI model folders (what the
onnxruntime-genai model builder, Olive and Foundry Local produce) behind the same Backend
protocol, scheduler and EngineCore as llama.cpp. The only module importing ``onnxruntime``.

How concurrency works: onnxruntime-genai's own Engine batches continuously only for models
built with paged attention, which its builder supports on CUDA alone; on CPU it batches the
requests that arrive together and makes later ones wait for the whole batch. So we drive
the folder's decoder graph (GroupQueryAttention, the builder's CPU layout) through
``onnxruntime`` ourselves, with slmkit's scheduler: each slot owns one row of a KV buffer
per layer (``[slots, kv_heads, n_ctx + 1, head]``, bound as both past and present, so the
graph writes new keys in place); a prompt chunk runs on its slot's row alone, and every
step decodes all running slots in one batched call, with new requests admitted between
steps (continuous batching). A row's attention mask covers exactly what its slot holds;
idle rows inside the batch write their dummy token just past what they hold (the extra
position), so cached prompts survive.

Sampling (temperature, top-k, top-p, min-p, penalties, seed, logit bias) and logprobs are
numpy over the graph's logits; structured output (JSON schemas, required tool calls) masks
them with llguidance (guide.py). Fill-in-the-middle works where the tokenizer has FIM tokens
(the ids come in the LoadSpec, from formats/onnx.py); embeddings where the graph outputs its
hidden states (`slm convert --to onnx` asks the builder for them; LoadSpec.embedding_output
names the output). LoRA adapters are not supported: they
answer 400 naming the feature.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.engine.backends import clean_message, score_row
from slmkit.engine.backends.guide import Guide, Guides
from slmkit.engine.plan import PrefillChunk, StepPlan, StepResult
from slmkit.errors import EngineError, InvalidRequest, LimitExceeded, ModelLoadError
from slmkit.hardware import cpu_budget
from slmkit.pipe import Image, LoadSpec, ModelInfo, SamplingParams

MAX_TOP_LOGPROBS = 20
# KV rows grow (and shrink) in steps of this many positions, so the worker's memory follows
# what its slots hold. Decode speed barely depends on it once only the logits are copied out
# (measured, SmolLM2-135M int4, 1 thread, 8 rows at positions 17..177: ~170 tok/s with a
# 192-position buffer, ~160 with 2048).
GROWTH = 256
UNSUPPORTED = "not supported by the ONNX Runtime backend"
# Tokens per step: the builder's graphs return logits for every position they read (float32,
# vocabulary wide: 256 x 200k-token vocabulary = 205 MB), so prompt chunks stay this small.
MAX_BATCH = 256
EMBED_CTX = 1024  # tokens per embedding input, at most (as for GGUF models)


class OnnxBackend:
    """Backend (see engine/core.py) over an ONNX Runtime GenAI folder."""

    speculative = False  # draft tokens are not verified here
    adaptive_threads = False  # ONNX Runtime fixes a session's thread pool when it is made
    shares_prefixes = False  # a slot's cache is not copied into another here

    def __init__(self, spec: LoadSpec, open_session: Callable[[Path, int], Any] | None = None) -> None:
        """``open_session``: how the graph becomes a session (unit tests pass a fake)."""
        folder = Path(spec.model_path)
        if spec.adapters:
            raise ModelLoadError(f"LoRA adapters are {UNSUPPORTED}")
        try:
            config = json.loads((folder / "genai_config.json").read_text(encoding="utf-8"))
            model, decoder = config["model"], config["model"]["decoder"]
            self.layers = int(decoder["num_hidden_layers"])
            kv_heads, head = int(decoder["num_key_value_heads"]), int(decoder["head_size"])
            names = decoder.get("inputs", {})
            self._past = (
                str(names.get("past_key_names", "past_key_values.%d.key")),
                str(names.get("past_value_names", "past_key_values.%d.value")),
            )
            outs = decoder.get("outputs", {})
            self._present = (
                str(outs.get("present_key_names", "present.%d.key")),
                str(outs.get("present_value_names", "present.%d.value")),
            )
            graph = folder / str(decoder["filename"])
            vocab = int(model["vocab_size"])
            trained = int(model["context_length"])
            eos = model.get("eos_token_id", [])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(
                f"the ONNX model folder's genai_config.json is unusable: {clean_message(exc)}"
            ) from exc
        self._threads = spec.n_threads or cpu_budget()
        self._session = (open_session or _open_session)(graph, self._threads)
        inputs = {i.name: i for i in self._session.get_inputs()}
        expected = {"input_ids", "attention_mask"} | {
            name % i for i in range(self.layers) for name in self._past
        }
        if not expected <= set(inputs) or not set(inputs) <= expected | {"position_ids"}:
            raise ModelLoadError(
                "the ONNX graph's inputs are not the decoder layout slmkit drives (input_ids, "
                "attention_mask, past key/values; a paged-attention or multimodal build?)"
            )
        self._positions = "position_ids" in inputs
        outputs = {o.name for o in self._session.get_outputs()}
        self._hidden_states = spec.embedding_output if spec.embedding_output in outputs else ""
        kv_type = inputs[self._past[0] % 0].type
        self._kv_dtype = np.float16 if "float16" in kv_type else np.float32
        n_ctx = min(spec.n_ctx, trained) if trained > 0 else spec.n_ctx
        self._slots = max(1, spec.n_parallel)
        self._limit = n_ctx + 1  # +1: where idle rows write (see module doc)
        self._kv_shape = (self._slots, kv_heads, head)
        self._keys: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._resize(min(self._limit, GROWTH))
        self._held: list[list[int]] = [[] for _ in range(self._slots)]  # the tokens each row holds
        self.tokenizer = Tokenizer(folder, eos if isinstance(eos, list) else [eos])
        self.fim = spec.fim
        self.bos_token, self.eos_token, self.add_bos = (
            self.tokenizer.bos_token,
            self.tokenizer.eos_token,
            self.tokenizer.add_bos,
        )
        self.info = ModelInfo(
            n_ctx=n_ctx,
            n_ctx_train=trained,
            n_embd=int(decoder["hidden_size"]),
            n_vocab=vocab,
            n_parallel=self._slots,
            n_batch=min(spec.n_batch, MAX_BATCH),
            n_threads=self._threads,
            extra={
                "bos_token": self.bos_token or None,
                "eos_token": self.eos_token or None,
                "backend": "onnx",
            },
        )
        self._samplers: dict[str, Sampler] = {}
        self._guides = Guides(folder / "tokenizer.json", vocab, sorted(self.tokenizer.eog))

    # -- tokens --------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return self.tokenizer.encode(text, add_bos=add_bos)

    def token_bytes(self, token: int) -> bytes:
        return self.tokenizer.token_bytes(token)

    # -- requests ------------------------------------------------------------------------
    def start(self, request_id: str, sampling: SamplingParams) -> None:
        guide = None if sampling.json_schema is None else self._guides.start(sampling.json_schema)
        self._samplers[request_id] = Sampler(sampling, self.info.n_vocab, guide)

    def release(self, request_id: str) -> None:
        self._samplers.pop(request_id, None)

    def set_threads(self, n: int) -> None:
        """Never called (adaptive_threads is False): the pool stays as loaded."""

    def close(self) -> None:
        self._session = None
        self._keys, self._values = [], []

    # -- steps ---------------------------------------------------------------------------
    def execute(self, plan: StepPlan) -> StepResult:
        for slot, keep in plan.trims:
            del self._held[slot][keep:]
        rows: dict[str, np.ndarray] = {}  # request id -> the logits it samples from
        prompt_scores: dict[str, tuple[tuple[int, int, float, tuple[tuple[int, float], ...]], ...]] = {}
        try:
            for chunk in plan.prefill:
                held, tokens, start = self._held[chunk.slot], list(chunk.tokens), chunk.start
                # ONNX Runtime's int4 MatMul takes another kernel for one row than for several,
                # with other rounding: a one-token chunk (a cached prompt's last token) is read
                # with the token before it again, so a repeated greedy request gets the same answer.
                again = 1 if len(tokens) == 1 and not chunk.targets and 0 < start <= len(held) else 0
                if again:
                    tokens, start = [held[start - 1], *tokens], start - 1
                logits = self._run([chunk.slot], [tokens], [start])[0][again:]
                del held[start:]
                held.extend(tokens)
                if chunk.sample:
                    rows[chunk.request_id] = logits[len(chunk.tokens) - 1]
                if chunk.targets:
                    prompt_scores[chunk.request_id] = self._score_prompt(chunk, logits)
            if plan.decode:
                items = {d.slot: d for d in plan.decode}
                first, last = min(items), max(items)
                slots = list(range(first, last + 1))
                tokens_in = [[items[s].token] if s in items else [0] for s in slots]
                starts = [items[s].position if s in items else len(self._held[s]) for s in slots]
                logits = self._run(slots, tokens_in, starts)
                for i, s in enumerate(slots):
                    if s in items:
                        del self._held[s][items[s].position :]
                        self._held[s].append(items[s].token)
                        rows[items[s].request_id] = logits[i, 0]
        except EngineError:
            self._held = [[] for _ in range(self._slots)]  # EngineCore replays every running request
            raise
        tokens_out: dict[str, int] = {}
        scored: dict[str, tuple[float, tuple[tuple[int, float], ...]]] = {}
        for rid, row in rows.items():
            sampler = self._samplers[rid]
            token = sampler.sample(row)
            tokens_out[rid] = token
            if sampler.top is not None:
                scored[rid] = score_row(row, token, sampler.top)
        eog = frozenset(rid for rid, t in tokens_out.items() if t in self.tokenizer.eog)
        return StepResult(
            tokens=tokens_out, end_of_generation=eog, logprobs=scored, prompt_logprobs=prompt_scores
        )

    def _score_prompt(
        self, chunk: PrefillChunk, logits: np.ndarray
    ) -> tuple[tuple[int, int, float, tuple[tuple[int, float], ...]], ...]:
        top = self._samplers[chunk.request_id].prompt_top
        return tuple(
            (chunk.start + 1 + i, target, *score_row(logits[i], target, top))
            for i, target in enumerate(chunk.targets)
        )

    def _resize(self, positions: int) -> None:
        """Make every KV row ``positions`` long, keeping what the rows hold."""
        slots, heads, head = self._kv_shape
        keep = min(positions, self._keys[0].shape[2]) if self._keys else 0
        for buffers in (self._keys, self._values):
            for layer in range(self.layers):
                grown = np.zeros((slots, heads, positions, head), self._kv_dtype)
                if keep:
                    grown[:, :, :keep] = buffers[layer][:, :, :keep]
                if layer < len(buffers):
                    buffers[layer] = grown
                else:
                    buffers.append(grown)

    def _fit(self, need: int) -> None:
        """Rows long enough for ``need`` positions, and no longer than the longest held
        sequence needs (rounded up to GROWTH): memory follows what the slots hold."""
        longest = max([need, *(len(h) + 1 for h in self._held)])
        size = min(self._limit, -(-longest // GROWTH) * GROWTH)
        current = self._keys[0].shape[2]
        if size > current or size <= current // 2:
            self._resize(size)

    def score(self, tokens: list[int], start: int = 0) -> np.ndarray:
        """Logits at every position of ``tokens`` written at ``start`` of row 0, which then
        holds them (what it held from ``start`` on is dropped): OnnxScorer's one row."""
        del self._held[0][start:]
        logits = np.asarray(self._run([0], [list(tokens)], [start])[0])
        self._held[0].extend(tokens)
        return logits

    def _run(self, slots: list[int], tokens: list[list[int]], starts: list[int]) -> np.ndarray:
        """One graph call over consecutive slots' rows; returns logits [rows, tokens, vocab]."""
        self._fit(max(s + len(t) for s, t in zip(starts, tokens, strict=True)) + 1)
        lo, hi = slots[0], slots[-1] + 1
        rows = [k[lo:hi] for k in self._keys], [v[lo:hi] for v in self._values]  # views: written in place
        logits = self._call(tokens, starts, rows, "logits")
        if logits.shape[-1] != self.info.n_vocab:  # the graph and its genai_config.json disagree
            raise EngineError(
                f"the ONNX graph gives {logits.shape[-1]} logits per token, its genai_config.json "
                f"says vocab_size {self.info.n_vocab}"
            )
        return logits

    def _call(
        self,
        tokens: list[list[int]],
        starts: list[int],
        kv: tuple[list[np.ndarray], list[np.ndarray]],
        output: str,
    ) -> np.ndarray:
        """One graph call: ``tokens[i]`` read at ``starts[i]`` on KV row i of ``kv`` (keys and
        values per layer, bound as past and present); returns ``output`` as float32."""
        import onnxruntime as ort

        n, width = len(tokens), max(len(t) for t in tokens)
        ids = np.zeros((n, width), np.int64)
        total = max(s + len(t) for s, t in zip(starts, tokens, strict=True))
        mask = np.zeros((n, total), np.int64)
        for i, (start, toks) in enumerate(zip(starts, tokens, strict=True)):
            ids[i, : len(toks)] = toks
            mask[i, : start + len(toks)] = 1
        binding = self._session.io_binding()
        binding.bind_cpu_input("input_ids", ids)
        binding.bind_cpu_input("attention_mask", mask)
        if self._positions:
            positions = np.zeros((n, width), np.int64)
            for i, (start, toks) in enumerate(zip(starts, tokens, strict=True)):
                positions[i, : len(toks)] = np.arange(start, start + len(toks))
            binding.bind_cpu_input("position_ids", positions)
        for layer in range(self.layers):
            for past, present, buffers in (
                (self._past[0], self._present[0], kv[0]),
                (self._past[1], self._present[1], kv[1]),
            ):
                value = ort.OrtValue.ortvalue_from_numpy(buffers[layer])  # shares memory: written in place
                binding.bind_ortvalue_input(past % layer, value)
                binding.bind_ortvalue_output(present % layer, value)
        binding.bind_output(output)
        try:
            self._session.run_with_iobinding(binding)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EngineError(
                f"ONNX Runtime failed a step of {int(mask.sum())} tokens: {clean_message(exc)}"
            ) from exc
        # only this output leaves the binding: copy_outputs_to_cpu would copy every KV buffer too
        return np.asarray(binding.get_outputs()[-1].numpy(), dtype=np.float32)

    def tokenize_media(
        self, request_id: str, text: str, images: tuple[Image, ...], add_bos: bool, offset: int
    ) -> list[int]:
        raise InvalidRequest("images: ONNX models take no images here")

    # -- embeddings ----------------------------------------------------------------------
    def rank(self, pairs: list[tuple[str, str]], max_doc_tokens: int = 0) -> tuple[list[float], int]:
        raise InvalidRequest("this model is not a cross-encoder (ONNX rerankers are not supported)")

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]:
        """Mean-pooled, L2-normalized final hidden states (llama.cpp's default pooling for
        generative models), and the number of tokens read. Each input runs on KV rows of
        its own, so the slots' cached prompts are untouched."""
        if not self._hidden_states:
            raise InvalidRequest(
                "embeddings need a graph that outputs its hidden states (`slm convert --to onnx` "
                f"builds one); this model's does not: {UNSUPPORTED}"
            )
        limit = min(self.info.n_ctx, EMBED_CTX)
        inputs = [self.tokenize(text, add_bos=self.add_bos) for text in texts]
        for ids in inputs:
            if not ids:
                raise InvalidRequest("input: an input is empty")
            if len(ids) > limit:
                raise LimitExceeded(
                    f"input: an input is {len(ids)} tokens, more than the embedding limit of {limit}"
                )
        return [self._pool(ids) for ids in inputs], sum(len(ids) for ids in inputs)

    def _pool(self, ids: list[int]) -> list[float]:
        _, heads, head = self._kv_shape
        shape = (1, heads, len(ids) + 1, head)
        kv = (
            [np.zeros(shape, self._kv_dtype) for _ in range(self.layers)],
            [np.zeros(shape, self._kv_dtype) for _ in range(self.layers)],
        )
        total = np.zeros(self.info.n_embd, np.float64)
        for start in range(0, len(ids), MAX_BATCH):
            chunk = ids[start : start + MAX_BATCH]
            hidden = self._call([chunk], [start], kv, self._hidden_states)
            total += hidden.reshape(-1, self.info.n_embd)[: len(chunk)].sum(axis=0)
        mean = total / len(ids)
        norm = float(np.linalg.norm(mean))
        return [float(x) for x in (mean / norm if norm > 0 else mean)]


def _open_session(graph: Path, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ModelLoadError("ONNX models need onnxruntime: pip install 'slmkit[onnx]'") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # idle threads sleep instead of spinning: a spinning pool starves a busy machine
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own types (InvalidGraph, Fail, NoSuchFile, ...)
        raise ModelLoadError(f"ONNX Runtime could not load the model: {clean_message(exc)}") from exc


class Sampler:
    """One request's token choice over raw logits, in llama.cpp's order: logit bias, the
    grammar's mask (structured output), penalties over the tokens sampled so far, then
    greedy, or top-k, top-p, min-p, temperature and a draw from a generator seeded per request."""

    def __init__(self, sampling: SamplingParams, vocab: int, guide: Guide | None = None) -> None:
        bad = [t for t, _ in sampling.logit_bias if not 0 <= t < vocab]
        if bad:
            raise InvalidRequest(f"logit_bias: token {bad[0]} is not in the vocabulary (0-{vocab - 1})")
        self.s, self.guide = sampling, guide
        self.rng = np.random.default_rng(sampling.seed)
        self.history: list[int] = []
        self.top = None if sampling.logprobs is None else min(max(sampling.logprobs, 0), MAX_TOP_LOGPROBS)
        prompt = sampling.prompt_logprobs
        self.prompt_top = 0 if prompt is None else min(max(prompt, 0), MAX_TOP_LOGPROBS)

    def sample(self, row: np.ndarray) -> int:
        s = self.s
        logits = row.astype(np.float64)  # a copy: logprobs are reported from the raw row
        for token, bias in s.logit_bias:
            logits[token] += bias
        if self.guide is not None:
            self.guide.mask(logits)
        recent = self.history[-s.repeat_last_n :] if s.repeat_last_n > 0 else []
        if recent and (s.repeat_penalty != 1.0 or s.presence_penalty or s.frequency_penalty):
            ids, counts = np.unique(np.array(recent), return_counts=True)
            seen = logits[ids]
            seen = np.where(seen > 0, seen / s.repeat_penalty, seen * s.repeat_penalty)
            logits[ids] = seen - counts * s.frequency_penalty - s.presence_penalty
        token = int(np.argmax(logits)) if s.temperature <= 0 else self._draw(logits)
        if self.guide is not None:
            self.guide.accept(token)
        self.history.append(token)
        return token

    def _draw(self, logits: np.ndarray) -> int:
        s = self.s
        k = s.top_k if 0 < s.top_k < logits.size else logits.size
        candidates = np.argpartition(-logits, k - 1)[:k] if k < logits.size else np.arange(logits.size)
        values = logits[candidates]
        order = np.argsort(-values, kind="stable")
        candidates, values = candidates[order], values[order]
        probs = np.exp(values - values[0])
        probs /= probs.sum()
        if s.top_p < 1.0:
            keep = int(np.searchsorted(np.cumsum(probs), s.top_p) + 1)
            candidates, values, probs = candidates[:keep], values[:keep], probs[:keep]
        if s.min_p > 0.0:
            keep = int(np.count_nonzero(probs >= s.min_p * probs[0]))
            candidates, values = candidates[:keep], values[:keep]
        scaled = (values - values[0]) / s.temperature
        final = np.exp(scaled)
        final /= final.sum()
        return int(candidates[self.rng.choice(len(candidates), p=final)])


class Tokenizer:
    """The folder's tokenizer.json through the ``tokenizers`` library, with what the engine
    needs beyond it: each token's raw bytes (for UTF-8 safe streaming and stop strings), BOS
    handling and the end-of-generation ids."""

    def __init__(self, folder: Path, eos_ids: list[Any]) -> None:
        try:
            from tokenizers import Tokenizer as HFTokenizer
        except ImportError as exc:
            raise ModelLoadError("ONNX models need tokenizers: pip install 'slmkit[onnx]'") from exc
        try:
            text = (folder / "tokenizer.json").read_text(encoding="utf-8")  # read once, parsed twice
            self._tok = HFTokenizer.from_str(text)
            spec = json.loads(text)
            config_path = folder / "tokenizer_config.json"
            config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        except Exception as exc:  # tokenizers raises a bare Exception on bad files
            raise ModelLoadError(f"the model's tokenizer.json is unusable: {clean_message(exc)}") from exc
        decoder = json.dumps(spec.get("decoder") or {})
        self._byte_level = "ByteLevel" in decoder
        self._special = {t.get("id") for t in spec.get("added_tokens", []) if t.get("special")}
        self.eog = {int(t) for t in eos_ids if isinstance(t, int)}
        self.bos_token = _token_text(config.get("bos_token"))
        self.eos_token = _token_text(config.get("eos_token"))
        bos = self._tok.token_to_id(self.bos_token) if self.bos_token else None
        probe = self._tok.encode("a", add_special_tokens=True).ids
        self._bos = bos
        self.add_bos = bool(config.get("add_bos_token", bos is not None and probe[:1] == [bos]))
        if bos is None:
            self.add_bos = False
        eos = self._tok.token_to_id(self.eos_token) if self.eos_token else None
        if eos is not None:
            self.eog.add(eos)
        self._bytes: dict[int, bytes] = {}

    def encode(self, text: str, *, add_bos: bool) -> list[int]:
        ids = list(self._tok.encode(text, add_special_tokens=False).ids)
        return [self._bos, *ids] if add_bos and self._bos is not None else ids

    def token_bytes(self, token: int) -> bytes:
        piece = self._bytes.get(token)
        if piece is None:
            piece = self._bytes[token] = self._piece(token)
        return piece

    def _piece(self, token: int) -> bytes:
        if token in self._special:
            return b""  # control tokens never reach the text (llama.cpp's special=False)
        text = self._tok.id_to_token(token)
        if text is None:
            return b""
        if self._byte_level:
            table = _unicode_to_byte()
            if all(ch in table for ch in text):
                return bytes(table[ch] for ch in text)
            return text.encode("utf-8")
        match = _BYTE_TOKEN.match(text)
        if match:
            return bytes([int(match.group(1), 16)])
        return text.replace("\u2581", " ").encode("utf-8")


_BYTE_TOKEN = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def _token_text(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else ""


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    """GPT-2's byte-level alphabet reversed: the printable character each byte became."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    chars, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


class OnnxScorer:
    """An ONNX folder as optimize/evaluate.py's LogitSource (perplexity, KLD): one row whose
    every position returns logits, like llama_offline.Scorer for GGUF files."""

    def __init__(self, folder: Path, *, n_ctx: int = 512, threads: int = 0) -> None:
        self.backend = OnnxBackend(LoadSpec(str(folder), n_ctx=n_ctx, n_parallel=1, n_threads=threads))
        self.n_ctx = self.backend.info.n_ctx
        self.n_vocab = self.backend.info.n_vocab
        tokenizer = self.backend.tokenizer
        self.add_bos = tokenizer.add_bos
        self.bos = tokenizer.encode("", add_bos=True)[0] if tokenizer.add_bos else -1

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        return self.backend.tokenize(text, add_bos=self.add_bos if add_bos is None else add_bos)

    def logits(self, tokens: list[int] | tuple[int, ...]) -> np.ndarray:
        """Logits at every position of ``tokens``, read from an empty row."""
        if not 0 < len(tokens) <= self.n_ctx:
            raise InvalidRequest(f"a window must be 1 to {self.n_ctx} tokens, not {len(tokens)}")
        return self.backend.score(list(tokens))

    def decode_speed(self, n_tokens: int = 64) -> float:
        """Greedy single-stream decode speed in tokens/s (end-of-generation ignored)."""
        import time

        token, steps = self.bos if self.bos >= 0 else 0, min(n_tokens, self.n_ctx)
        started = time.perf_counter()
        for position in range(steps):
            token = int(self.backend.score([token], position)[0].argmax())
        return steps / (time.perf_counter() - started)

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> OnnxScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
