"""The catalog of small language models shipped in the package (data/catalog.yaml).

Each entry carries what sizing needs before any download (parameter count, architecture
dimensions, trained context, vocabulary) and where to pull each quantization from.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from slmkit.errors import InvalidRequest, NotFound
from slmkit.models.memory import Shape, swa_layers
from slmkit.optimize.quants import QUANTS, quant_info

Tier = Literal["micro", "small", "medium"]
TIERS: dict[Tier, tuple[float, float]] = {  # parameters, [low, high)
    "micro": (0, 1.5e9),
    "small": (1.5e9, 14e9),
    "medium": (14e9, 30.6e9),  # "up to 30B": Qwen3-30B-A3B counts 30.5B
}


def tier_of(params: int) -> Tier:
    for name, (low, high) in TIERS.items():
        if low <= params < high:
            return name
    raise InvalidRequest(f"{params / 1e9:.1f}B parameters is beyond the medium tier (30B)")


class Quant(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pull: str = Field(min_length=1)  # `slm pull` reference, or "builtin" for the shipped model
    size: int | None = Field(default=None, gt=0)  # bytes of a known file of this quant


# ONNX Runtime GenAI builds (the builder's precisions): bits per weight on disk, measured on
# SmolLM2-135M int4 (86 MB for 135M weights: block-32 scales and an int4 output layer), and the
# llama.cpp type of like quality (int4 is round-to-nearest block-32, as Q4_0).
ONNX_BPW = {"int4": 5.1, "int8": 8.5, "fp16": 16.0, "fp32": 32.0}
ONNX_LIKE = {"int4": "Q4_0", "int8": "Q8_0", "fp16": "F16", "fp32": "F16"}
RUNTIMES = {"gguf": "llama.cpp", "onnx": "ONNX Runtime"}


class CatalogModel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    name: str
    source: str  # Hugging Face repository of the original weights
    license: str
    arch: str  # llama.cpp architecture name
    params: int = Field(gt=0)  # every weight, embeddings included
    active_params: int | None = Field(default=None, gt=0)  # per token, for mixture-of-experts
    layers: int = Field(gt=0)
    hidden: int = Field(gt=0)
    ffn: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    head_dim: int = Field(gt=0)
    vocab: int = Field(gt=0)
    context: int = Field(gt=0)
    sliding_window: int = Field(default=0, ge=0)  # sliding-window attention layers' window
    tied_embeddings: bool
    tokenizer: Literal["bpe", "spm"]
    task: Literal["chat", "embedding", "rerank"] = "chat"  # rerank/embedding: encoders, no KV cache
    quants: dict[str, Quant] = Field(min_length=1)
    onnx: dict[str, Quant] = Field(default_factory=dict)  # ONNX Runtime GenAI builds, by precision
    ollama: str | None = None  # the Ollama library's name for it
    notes: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> CatalogModel:
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.id}: heads ({self.heads}) must be a multiple of kv_heads")
        unknown = set(self.quants) - set(QUANTS)
        if unknown:
            raise ValueError(f"{self.id}: unknown quant types {sorted(unknown)}")
        if set(self.onnx) - set(ONNX_BPW):
            raise ValueError(f"{self.id}: unknown ONNX precisions {sorted(set(self.onnx) - set(ONNX_BPW))}")
        if self.active_params and self.active_params > self.params:
            raise ValueError(f"{self.id}: active_params exceeds params")
        embeddings = self.vocab * self.hidden * (1 if self.tied_embeddings else 2)
        if embeddings >= self.params:
            raise ValueError(f"{self.id}: embeddings alone exceed the parameter count")
        tier_of(self.params)
        return self

    @property
    def tier(self) -> Tier:
        return tier_of(self.params)

    @property
    def shape(self) -> Shape:
        return Shape(
            layers=self.layers,
            hidden=self.hidden,
            ffn=self.ffn,
            heads=self.heads,
            kv_heads=self.kv_heads,
            key_length=self.head_dim,
            value_length=self.head_dim,
            vocab=self.vocab,
            context=self.context,
            merges=self.vocab if self.tokenizer == "bpe" else 0,
            encoder=self.task != "chat",
            swa_layers=swa_layers(
                {f"{self.arch}.attention.sliding_window": self.sliding_window}, self.arch, self.layers
            ),
            swa_window=self.sliding_window,
        )

    def variants(self) -> list[tuple[str, str]]:
        """Every build the catalog knows: (format, quant or precision), GGUF first."""
        return [("gguf", q) for q in self.quants] + [("onnx", p) for p in self.onnx]

    def pull_ref(self, fmt: str, quant: str) -> str:
        return (self.onnx if fmt == "onnx" else self.quants)[quant].pull

    def onnx_weight_bytes(self, precision: str) -> int:
        """Bytes of an ONNX build's weights: its known size, else parameters x bits."""
        known = self.onnx.get(precision)
        if known is not None and known.size:
            return known.size
        return int(self.params * ONNX_BPW[precision] / 8)

    def default_quant(self) -> str:
        return "Q4_K_M" if "Q4_K_M" in self.quants else next(iter(self.quants))

    def weight_bytes(self, quant: str) -> tuple[int, int]:
        """(tensor bytes, bytes llama.cpp repacks) of this model in ``quant``.

        A known file size wins. Otherwise: llama.cpp's mixes keep the token embeddings of
        tied models at Q8_0 (they double as the output layer) and the output layer of untied
        ones at Q6_K, and quantize the rest at the type's effective bits per weight.
        """
        q = quant_info(quant)
        embed = self.vocab * self.hidden
        body = self.params - embed * (1 if self.tied_embeddings else 2)
        body_bytes = body * q.bpw / 8
        if self.tied_embeddings:  # one matrix, kept at Q8_0 or better
            embed_bytes = embed * max(q.bpw, 8.5) / 8
        else:  # token embeddings at the base type, the output layer at Q6_K or better
            embed_bytes = embed * q.bpw / 8 + embed * max(q.bpw, 6.5625) / 8
        total = int(body_bytes + embed_bytes)
        known = self.quants.get(quant)
        if known is not None and known.size:
            total = known.size - self.vocab * 24  # the header: token strings, scores, types
        return total, int(self._repacked_fraction(quant) * body_bytes)

    def _repacked_fraction(self, quant: str) -> float:
        """Share of the non-embedding weights in types llama.cpp repacks (see memory.py)."""
        block = quant_info(quant).repack_block
        if not block:
            return 0.0
        attn = self.hidden * self.head_dim * (2 * self.heads + 2 * self.kv_heads)
        mlp = 3 * self.hidden * self.ffn
        layer = attn + mlp
        packed = 0.0
        if self.hidden % block == 0:
            packed += attn - 0.5 * self.hidden * self.head_dim * self.kv_heads + 2 * self.hidden * self.ffn
        if self.ffn % block == 0:
            packed += self.hidden * self.ffn  # the down projection
        return min(1.0, packed / layer) if layer else 0.0


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[CatalogModel] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        ids = [m.id for m in self.models]
        if len(ids) != len(set(ids)):
            raise ValueError("duplicate model ids")
        return self

    def get(self, model_id: str) -> CatalogModel:
        for m in self.models:
            if m.id == model_id.lower() or (m.ollama and m.ollama == model_id.lower()):
                return m
        import difflib

        close = difflib.get_close_matches(model_id.lower(), [m.id for m in self.models], n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close[:3])}?" if close else "; see `slm catalog`"
        raise NotFound(f"model {model_id!r} is not in the catalog{hint}")


def parse_catalog(text: str) -> Catalog:
    import yaml

    try:
        return Catalog.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as exc:
        raise InvalidRequest(f"invalid catalog: {exc}") from exc


@functools.cache
def load_catalog() -> Catalog:
    text = resources.files("slmkit.optimize").joinpath("data/catalog.yaml").read_text("utf-8")
    return parse_catalog(text)


def params_label(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    return f"{math.floor(n / 1e6)}M"
