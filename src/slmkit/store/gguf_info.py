"""Read what the store needs from a GGUF header, with gguf-py, refusing malformed files.

This is the Python-side pre-validator: a file must parse here before it enters the store,
so most malformed GGUFs are refused before llama.cpp ever sees them. Files that pass and
still break llama.cpp only ever reach it inside a worker process (engine/worker.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slmkit.errors import InvalidModelFile

GGUF_MAGIC = b"GGUF"
# gguf-py raises many kinds of error on a malformed file; all mean "not a GGUF we accept".
_PARSE_ERRORS = (ValueError, IndexError, KeyError, OverflowError, TypeError, MemoryError, OSError)


@dataclass(frozen=True)
class GGUFInfo:
    """Facts from a GGUF header."""

    architecture: str  # general.architecture
    name: str  # general.name, may be empty
    file_type: str  # quantization label, e.g. "Q4_1"
    parameter_count: int  # sum of tensor elements
    size_label: str  # general.size_label or derived, e.g. "135M"
    context_length: int  # <arch>.context_length, 0 when absent
    embedding_length: int  # <arch>.embedding_length (model width)
    chat_template: str | None  # tokenizer.chat_template
    vocab_size: int = 0  # entries in tokenizer.ggml.tokens
    metadata: dict[str, Any] = field(default_factory=dict)  # scalar header fields for `show`


def _size_label(count: int) -> str:
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.0f}M"
    return f"{count / 1e3:.0f}K"


def read_info(path: Path) -> GGUFInfo:
    """Parse the GGUF header at ``path``; raise InvalidModelFile when it is malformed."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise InvalidModelFile(f"could not read model file: {exc.strerror}") from exc
    if magic != GGUF_MAGIC:
        raise InvalidModelFile("not a GGUF file (bad magic)")
    from gguf import GGUFReader, LlamaFileType

    try:
        reader = GGUFReader(str(path), "r")
        fields: dict[str, Any] = {}
        for key, fld in reader.fields.items():
            if key.startswith("tokenizer.ggml.") and key.endswith(
                ("tokens", "merges", "scores", "token_type")
            ):
                continue
            fields[key] = fld.contents()
        count = sum(int(t.n_elements) for t in reader.tensors)
        tokens = reader.fields.get("tokenizer.ggml.tokens")
        vocab = len(tokens.data) if tokens is not None else 0
    except _PARSE_ERRORS as exc:
        raise InvalidModelFile(f"malformed GGUF: {type(exc).__name__}") from exc
    if not reader.tensors:
        raise InvalidModelFile("malformed GGUF: no tensors")
    arch = str(fields.get("general.architecture", ""))
    if not arch:
        raise InvalidModelFile("malformed GGUF: general.architecture is missing")
    try:
        ftype = LlamaFileType(int(fields.get("general.file_type", -1))).name.removeprefix("MOSTLY_")
    except (ValueError, TypeError):
        ftype = "unknown"
    template = fields.get("tokenizer.chat_template")
    scalars = {k: v for k, v in fields.items() if isinstance(v, str | int | float | bool)}
    scalars.pop("tokenizer.chat_template", None)
    return GGUFInfo(
        architecture=arch,
        name=str(fields.get("general.name", "")),
        file_type=ftype,
        parameter_count=count,
        size_label=str(fields.get("general.size_label") or _size_label(count)),
        context_length=int(fields.get(f"{arch}.context_length", 0) or 0),
        embedding_length=int(fields.get(f"{arch}.embedding_length", 0) or 0),
        chat_template=str(template) if isinstance(template, str) and template else None,
        vocab_size=vocab,
        metadata=scalars,
    )
