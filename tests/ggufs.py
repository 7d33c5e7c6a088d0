"""Small synthetic GGUF files for tests, written with gguf-py (no weights needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter

TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def write_tiny_gguf(
    path: Path, *, arch: str = "llama", template: str | None = TEMPLATE, classifier: int = 0
) -> Path:
    """A well-formed GGUF header with one small tensor. llama.cpp cannot run it (tensors
    are missing), which makes it the "imports fine, fails to load" case too. ``classifier``:
    add a classification head with that many outputs (a cross-encoder has one)."""
    writer = GGUFWriter(str(path), arch)
    writer.add_name("tiny test model")
    writer.add_context_length(128)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_file_type(0)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    if classifier:
        writer.add_tensor("cls.output.weight", np.zeros((classifier, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_lora(
    path: Path, *, layers: int = 30, width: int = 576, rank: int = 8, scale: float = 0.5, seed: int = 0
) -> Path:
    """A LoRA adapter GGUF for a llama-architecture model of this width, on every layer's
    attention query weights, with random (and, at this scale, output-changing) values."""
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), "llama")
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(rank))
    for layer in range(layers):
        name = f"blk.{layer}.attn_q.weight"
        writer.add_tensor(f"{name}.lora_a", (rng.standard_normal((rank, width)) * scale).astype(np.float32))
        writer.add_tensor(f"{name}.lora_b", (rng.standard_normal((width, rank)) * scale).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
