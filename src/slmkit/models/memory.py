"""Will it fit? Memory estimates for a model load, and the budget they must fit in.

One estimator serves the engine's memory budget, `slm fit`, `slm catalog --fits` and
`slm recommend`. It predicts the worker process's resident set (RSS) once a full batch has
run, as the sum of:

- weights: the GGUF's tensor data, mmapped and all touched by a forward pass;
- repacked weights: on x86 with AVX2 and on ARM, llama.cpp copies Q4_0, Q4_K and IQ4_NL
  tensors into an interleaved layout at load, so those bytes count twice;
- KV cache: layers x (key + value length) x KV heads x context x slots x bytes per element
  (llama.cpp zeroes it at load, so all of it is resident); sliding-window layers hold only
  their window plus a batch per slot (rounded up to 256 cells, as llama.cpp sizes it) unless
  SLM_SWA_FULL keeps them full-size;
- compute: the activations a batch of ``n_batch`` tokens touches, plus one row of logits per
  slot. llama.cpp reserves much more (the worst-case graph; for Gemma 3's 262k vocabulary
  over 500 MiB of logits) but never touches it when only the last token's logits are read;
- overhead: the Python worker and llama.cpp runtime, plus the tokenizer's tables.

Calibrated on SmolLM2-135M Q4_1 and Gemma 3 270M Q4_K_M at context 512, 2048 and 8192
(tests/integration/test_fit.py checks +-10% against the real worker's RSS).
"""

from __future__ import annotations

from dataclasses import dataclass

from slmkit import hardware
from slmkit.errors import InvalidRequest
from slmkit.store.gguf_info import GGUFInfo

MiB = 1024 * 1024
RUNTIME = 48 * MiB  # Python, slmkit's worker modules, llama.cpp's runtime
VOCAB_BYTES = 170  # llama.cpp's tables per vocabulary entry (token text, scores, lookup maps)
MERGE_BYTES = 240  # per BPE merge rule (llama.cpp keeps them in a map of string pairs)
ACTIVATIONS = 4  # resident activation buffers of n_batch x (width + FFN width) floats
HEADROOM = 1024 * MiB  # left to the OS and the API process when the budget is automatic
API_PROCESS = 256 * MiB  # the API process beside the workers (measured ~80-110 MiB RSS, with room):
# all the headroom under a container's memory limit, which the OS is outside of
KV_TYPES = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
}
REPACKED = ("Q4_0", "Q4_K", "IQ4_NL")  # ggml types llama.cpp's CPU backend repacks at load


@dataclass(frozen=True)
class Shape:
    """What the estimate needs to know about a model's architecture."""

    layers: int
    hidden: int  # model width
    ffn: int  # feed-forward width (active experts' total for mixture-of-experts models)
    heads: int
    kv_heads: int
    key_length: int  # per head
    value_length: int  # per head
    vocab: int
    context: int  # trained context length, 0 when unknown
    merges: int = 0  # BPE merge rules
    encoder: bool = False  # BERT and kin (embedding models, rerankers): no KV cache
    swa_layers: int = 0  # layers with sliding-window attention (Gemma 2/3)
    swa_window: int = 0  # their window, in tokens


@dataclass(frozen=True)
class Estimate:
    """Bytes a worker is expected to hold resident, by part."""

    weights: int
    repacked: int  # extra copies of repacked weights
    kv_cache: int
    compute: int
    overhead: int  # runtime + tokenizer
    n_ctx: int  # context per slot the estimate is for (capped at the trained context)
    n_parallel: int

    @property
    def total(self) -> int:
        """The expected RSS."""
        return self.weights + self.repacked + self.kv_cache + self.compute + self.overhead

    @property
    def required(self) -> int:
        """What must fit: the RSS less the file pages of repacked tensors, which stay mapped
        but are clean page cache the kernel reclaims under pressure."""
        return self.total - self.repacked

    def parts(self) -> dict[str, int]:
        return {
            "weights": self.weights,
            "repacked": self.repacked,
            "kv_cache": self.kv_cache,
            "compute": self.compute,
            "overhead": self.overhead,
            "total": self.total,
            "required": self.required,
        }


def kv_bytes_per_element(kv_type: str) -> float:
    try:
        return KV_TYPES[kv_type.lower()]
    except KeyError:
        raise InvalidRequest(f"kv type: {kv_type!r} is not one of {', '.join(KV_TYPES)}") from None


def estimate_shape(
    shape: Shape,
    weights: int,
    repacked: int,
    n_ctx: int,
    n_parallel: int = 1,
    *,
    n_batch: int = 512,
    kv_type: str = "f16",
    swa_full: bool = False,
    kv_pool: int = 0,
) -> Estimate:
    """The resident bytes of a worker serving ``n_parallel`` slots of ``n_ctx`` tokens (all
    sharing ``kv_pool`` KV cells when that is fewer: SLM_KV_POOL)."""
    if n_ctx < 1 or n_parallel < 1 or n_batch < 1:
        raise InvalidRequest("context, parallel and batch sizes must be at least 1")
    ctx = min(n_ctx, shape.context) if shape.context else n_ctx
    per_layer = shape.kv_heads * (shape.key_length + shape.value_length)  # per token
    swa = shape.swa_layers if shape.swa_window and not swa_full else 0
    pool = _pad(kv_pool) if 0 < kv_pool < ctx * n_parallel else 0
    if pool:  # one shared pool (llama.cpp's unified cache); its sliding-window layers hold
        # every slot's window plus a batch (llama-kv-cache-iswa.cpp)
        window = min(pool, _pad(shape.swa_window * n_parallel + n_batch))
        cells = (shape.layers - swa) * pool + swa * window
    else:  # a pool per slot, each with its own window plus a batch
        window = min(ctx, _pad(shape.swa_window + n_batch))
        cells = ((shape.layers - swa) * ctx + swa * window) * n_parallel
    kv = 0 if shape.encoder else int(per_layer * cells * kv_bytes_per_element(kv_type))
    batch = min(n_batch, ctx * n_parallel)
    compute = ACTIVATIONS * 4 * batch * (shape.hidden + shape.ffn) + 4 * n_parallel * shape.vocab
    overhead = RUNTIME + VOCAB_BYTES * shape.vocab + MERGE_BYTES * shape.merges
    return Estimate(weights, repacked, kv, compute, overhead, ctx, n_parallel)


def _pad(cells: int) -> int:
    """llama.cpp rounds KV caches up to 256 cells."""
    return -(-cells // 256) * 256


def _int(meta: dict[str, object], key: str, default: int) -> int:
    value = meta.get(key, default)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


# Every n-th layer of these architectures attends globally, the others over a sliding window,
# unless the GGUF names the pattern (llama.cpp's defaults, llama-model.cpp)
SWA_PATTERNS = {"gemma2": 2, "gemma3": 6, "cohere2": 4}


def swa_layers(meta: dict[str, object], arch: str, layers: int) -> int:
    """How many layers use sliding-window attention (0 when the model has none)."""
    if _int(meta, f"{arch}.attention.sliding_window", 0) <= 0:
        return 0
    pattern = meta.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(pattern, list | tuple):  # one flag per layer
        return sum(1 for flag in pattern[:layers] if flag)
    every = _int(meta, f"{arch}.attention.sliding_window_pattern", SWA_PATTERNS.get(arch, 0))
    return sum(1 for il in range(layers) if il % every < every - 1) if every > 1 else 0


def shape_of(info: GGUFInfo) -> Shape:
    """A model's shape from its GGUF header."""
    meta, arch = info.metadata, info.architecture
    layers = _int(meta, f"{arch}.block_count", 1)
    heads = max(1, _int(meta, f"{arch}.attention.head_count", 1))
    width = max(1, info.embedding_length)
    ffn = _int(meta, f"{arch}.feed_forward_length", 4 * width)
    experts_used = _int(meta, f"{arch}.expert_used_count", 0)
    if experts_used:
        ffn = experts_used * _int(meta, f"{arch}.expert_feed_forward_length", ffn)
    return Shape(
        layers=layers,
        hidden=width,
        ffn=ffn,
        heads=heads,
        kv_heads=_int(meta, f"{arch}.attention.head_count_kv", heads),
        key_length=_int(meta, f"{arch}.attention.key_length", width // heads),
        value_length=_int(meta, f"{arch}.attention.value_length", width // heads),
        vocab=max(info.vocab_size, 1),
        context=info.context_length,
        merges=info.merges,
        encoder=info.encoder_only,
        swa_layers=swa_layers(meta, arch, layers),
        swa_window=_int(meta, f"{arch}.attention.sliding_window", 0),
    )


def estimate(
    info: GGUFInfo,
    n_ctx: int,
    n_parallel: int,
    n_batch: int = 512,
    *,
    adapters: int = 0,
    kv_type: str = "f16",
    repack: bool | None = None,
    swa_full: bool = False,
    kv_pool: int = 0,
) -> Estimate:
    """The estimate for a GGUF model, plus ``adapters`` bytes of LoRA adapters."""
    repack = hardware.cpu_repacks() if repack is None else repack
    repacked = sum(info.tensor_bytes.get(kind, 0) for kind in REPACKED) if repack else 0
    weights = sum(info.tensor_bytes.values()) + adapters
    return estimate_shape(
        shape_of(info),
        weights,
        repacked,
        n_ctx,
        n_parallel,
        n_batch=n_batch,
        kv_type=kv_type,
        swa_full=swa_full,
        kv_pool=kv_pool,
    )
