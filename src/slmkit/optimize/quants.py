"""llama.cpp's quantization types, as `slm quantize`, `fit` and `recommend` know them."""

from __future__ import annotations

from dataclasses import dataclass

from slmkit.errors import InvalidRequest


@dataclass(frozen=True)
class QuantType:
    name: str
    bpw: float  # effective bits per weight of llama.cpp's mix (Llama-class models)
    repack_block: int = 0  # row multiple llama.cpp's CPU repacking needs; 0: never repacked
    batch_gain: float = 1.5  # aggregate decode speed of 8 sequences over 1, on a 2-core AVX2 CPU
    gain_measured: bool = False  # batch_gain measured here (benchmarks/quant_batching.py), else assumed
    quality: float = 1.0  # rough share of F16 quality kept (from llama.cpp's published perplexities)
    ternary: bool = False  # only meaningful for ternary-trained models (BitNet)


# Batching gains marked measured come from benchmarks/quant_batching.py on this project's 2-core
# x86_64 machine (results/quant-batching-*.json: 8 sequences vs 1, 48-128 tokens, llama.cpp's
# low-level batched decode), for files whose bytes are mostly that type. Q4_1 and Q5_1 gain
# least (1.5-1.7x) because llama.cpp has no repacked kernel for them; the repacked Q4_0 and
# IQ4_NL, Q8_0 and F16 gain 2-2.9x. K-quant gains are assumptions until measured on a model
# whose width is a multiple of 256 (both shipped models fall back to Q5_0/Q8_0 rows).
QUANTS: dict[str, QuantType] = {
    q.name: q
    for q in (
        QuantType("F32", 32.0),
        QuantType("F16", 16.0, batch_gain=2.6, gain_measured=True),
        QuantType("BF16", 16.0),
        QuantType("Q8_0", 8.5, quality=0.999, batch_gain=2.2, gain_measured=True),
        QuantType("Q6_K", 6.5625, quality=0.998, batch_gain=1.9),
        QuantType("Q5_K_M", 5.69, quality=0.995, batch_gain=1.6),
        QuantType("Q5_K_S", 5.54, quality=0.993, batch_gain=1.6),
        QuantType("Q5_1", 6.0, quality=0.993, batch_gain=1.5, gain_measured=True),
        QuantType("Q5_0", 5.5, quality=0.99, batch_gain=2.3, gain_measured=True),
        QuantType("Q4_K_M", 4.85, repack_block=256, quality=0.985, batch_gain=2.0),
        QuantType("Q4_K_S", 4.58, repack_block=256, quality=0.98, batch_gain=2.0),
        QuantType("Q4_1", 5.0, quality=0.975, batch_gain=1.65, gain_measured=True),
        QuantType("Q4_0", 4.5, repack_block=32, quality=0.97, batch_gain=2.1, gain_measured=True),
        QuantType("IQ4_NL", 4.5, repack_block=32, quality=0.98, batch_gain=1.95, gain_measured=True),
        QuantType("IQ4_XS", 4.25, quality=0.978),
        QuantType("Q3_K_L", 4.27, quality=0.96),
        QuantType("Q3_K_M", 3.91, quality=0.95),
        QuantType("Q3_K_S", 3.5, quality=0.93),
        QuantType("Q2_K", 3.35, quality=0.85, batch_gain=1.8),
        QuantType("TQ2_0", 2.06, ternary=True),
        QuantType("TQ1_0", 1.69, ternary=True),
    )
}

# What `slm quantize --to` accepts (the list plus close relatives).
QUANTIZE_TARGETS = (
    "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_0", "Q4_1",
    "Q3_K_M", "Q3_K_L", "Q3_K_S", "Q2_K", "IQ4_NL", "TQ2_0", "TQ1_0", "F16", "BF16",
)  # fmt: skip


def quant_info(name: str) -> QuantType:
    try:
        return QUANTS[name.upper()]
    except KeyError:
        raise InvalidRequest(f"quant: unknown type {name!r} (one of {', '.join(QUANTS)})") from None


def file_type_id(name: str) -> int:
    """llama.cpp's LLAMA_FTYPE for ``name``, from gguf-py's copy of the enum."""
    from gguf import LlamaFileType

    key = "ALL_F32" if name == "F32" else f"MOSTLY_{name.upper()}"
    try:
        return int(LlamaFileType[key])
    except KeyError:
        raise InvalidRequest(f"quant: llama.cpp has no file type {name!r}") from None
