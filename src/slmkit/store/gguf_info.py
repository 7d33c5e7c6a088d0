"""A strict GGUF reader: the gate every model file passes before it enters the store.

It walks the header, the metadata and the tensor table with hard bounds, reading through
a file handle (never mapping or allocating by a size the file claims), and refuses
anything llama.cpp's own parser has been crashed or tricked by (SECURITY.md L1, O4, O8,
O9): bad magic or version, counts and lengths beyond the file, nested or oversized arrays,
unknown value or tensor types, more than 4 dimensions, element counts that overflow,
tensor data outside the file or misaligned, duplicate keys or tensor names.

Only what the store needs is kept: scalar metadata, the chat template, the vocabulary
size. Files that pass and still break llama.cpp only ever reach it inside a worker process.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from slmkit.errors import InvalidModelFile

GGUF_MAGIC = b"GGUF"
VERSIONS = (2, 3)
MAX_STRING = 16 * 1024 * 1024  # bytes in one metadata string (chat templates are ~10 KiB)
MAX_KEY = 64 * 1024  # bytes in a key or tensor name
MAX_TENSOR_NAME = 63  # llama.cpp's GGML_MAX_NAME minus the terminator
MAX_ARRAY = 64 * 1024 * 1024  # elements in one metadata array
MAX_KV = 1 << 20  # metadata entries
MAX_TENSORS = 1 << 20
MAX_DIMS = 4
MAX_ELEMENTS = 1 << 62  # a tensor's element count (ggml's int64 limit, with room)
DEFAULT_ALIGNMENT = 32

# value type -> struct format (fixed-size scalars); 8 = string, 9 = array
_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


def _type_sizes() -> dict[int, tuple[int, int]]:
    """ggml tensor type -> (block size in elements, bytes per block), from gguf-py."""
    from gguf import GGML_QUANT_SIZES

    return {int(kind): (int(block), int(size)) for kind, (block, size) in GGML_QUANT_SIZES.items()}


ENCODERS = frozenset({"bert", "nomic-bert", "nomic-bert-moe", "jina-bert-v2", "modern-bert", "neo-bert"})


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
    merges: int = 0  # entries in tokenizer.ggml.merges (BPE tokenizers)
    tensor_bytes: dict[str, int] = field(default_factory=dict)  # ggml type name -> bytes of tensor data
    classifier_outputs: int = 0  # outputs of a classification head (cls.output / cls), 0 = none

    @property
    def pooling_type(self) -> int | None:
        """``<arch>.pooling_type`` (llama.cpp: 1 mean, 2 CLS, 3 last, 4 rank), None when absent."""
        value = self.metadata.get(f"{self.architecture}.pooling_type")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def reranker(self) -> bool:
        """A cross-encoder: rank pooling, or an encoder whose classification head has one
        output, a relevance score (bge-reranker and kin; llama.cpp's server needs
        --reranking for those, as their GGUFs do not say rank)."""
        if self.pooling_type == 4:
            return True
        return self.encoder_only and self.pooling_type is None and self.classifier_outputs == 1

    @property
    def encoder_only(self) -> bool:
        """An embedding encoder (BERT and kin): it reads text, it cannot generate."""
        causal = self.metadata.get(f"{self.architecture}.attention.causal")
        return causal is False or self.architecture in ENCODERS


class _Reader:
    """Bounded reads from a file of known size; every failure is InvalidModelFile."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh = fh
        self.size = size
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > self.size:
            raise InvalidModelFile(f"malformed GGUF: {what} runs past the end of the file")
        data = self.fh.read(n)
        if len(data) != n:
            raise InvalidModelFile(f"malformed GGUF: {what} is truncated")
        self.pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise InvalidModelFile(f"malformed GGUF: {what} runs past the end of the file")
        self.fh.seek(n, 1)
        self.pos += n

    def scalar(self, fmt: str, what: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))[0]

    def u32(self, what: str) -> int:
        return int(self.scalar("<I", what))

    def u64(self, what: str) -> int:
        return int(self.scalar("<Q", what))

    def string(self, what: str, limit: int = MAX_STRING) -> str:
        n = self.u64(f"length of {what}")
        if n > limit:
            raise InvalidModelFile(f"malformed GGUF: {what} is {n} bytes, more than the limit of {limit}")
        raw = self.take(n, what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidModelFile(f"malformed GGUF: {what} is not UTF-8") from exc


def _value(r: _Reader, kind: int, key: str, keep: bool) -> Any:
    """Read (or, for arrays not kept, skip) one metadata value."""
    if kind in _SCALARS:
        return r.scalar(_SCALARS[kind], f"value of {key!r}")
    if kind == _STRING:
        return r.string(f"value of {key!r}")
    if kind != _ARRAY:
        raise InvalidModelFile(f"malformed GGUF: unknown value type {kind} for {key!r}")
    inner = r.u32(f"array type of {key!r}")
    count = r.u64(f"array length of {key!r}")
    if count > MAX_ARRAY:
        raise InvalidModelFile(f"malformed GGUF: array {key!r} has {count} elements, more than {MAX_ARRAY}")
    if inner in _SCALARS:
        r.skip(count * struct.calcsize(_SCALARS[inner]), f"array {key!r}")
    elif inner == _STRING:
        for _ in range(count):
            r.skip(min(r.u64(f"string in {key!r}"), MAX_STRING + 1), f"string in {key!r}")
    else:  # nested arrays and unknown types: llama.cpp refuses them too
        raise InvalidModelFile(f"malformed GGUF: array {key!r} has unsupported element type {inner}")
    return count if keep else None


def _size_label(count: int) -> str:
    if count >= 1_000_000_000:
        return f"{count / 1e9:.1f}B"
    if count >= 1_000_000:
        return f"{count / 1e6:.0f}M"
    return f"{count / 1e3:.0f}K"


def read_info(path: Path) -> GGUFInfo:
    """Validate the GGUF at ``path`` and return its facts; InvalidModelFile otherwise.

    Parsing a large vocabulary takes a few hundred milliseconds, and loads and ``show`` ask
    again and again about the same read-only blobs: results are cached by path, size and
    modification time, so a changed file is always parsed again."""
    try:
        st = path.stat()
    except OSError as exc:
        raise InvalidModelFile(f"could not read model file: {exc.strerror}") from exc
    return _read_cached(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _read_cached(path: str, size: int, mtime_ns: int) -> GGUFInfo:
    try:
        with open(path, "rb") as fh:
            return _parse(_Reader(fh, size))
    except OSError as exc:
        raise InvalidModelFile(f"could not read model file: {exc.strerror}") from exc


def _parse(r: _Reader) -> GGUFInfo:
    if r.size < 24 or r.take(4, "magic") != GGUF_MAGIC:
        raise InvalidModelFile("not a GGUF file (bad magic)")
    version = r.u32("version")
    if version not in VERSIONS:
        raise InvalidModelFile(f"unsupported GGUF version {version} (supported: 2, 3)")
    n_tensors, n_kv = r.u64("tensor count"), r.u64("metadata count")
    if n_tensors > MAX_TENSORS or n_kv > MAX_KV:
        raise InvalidModelFile(f"malformed GGUF: {n_tensors} tensors, {n_kv} metadata entries: too many")
    meta: dict[str, Any] = {}
    vocab = merges = 0
    for _ in range(n_kv):
        key = r.string("metadata key", MAX_KEY)
        if key in meta:
            raise InvalidModelFile(f"malformed GGUF: duplicate metadata key {key!r}")
        kind = r.u32(f"type of {key!r}")
        value = _value(r, kind, key, keep=key in {"tokenizer.ggml.tokens", "tokenizer.ggml.merges"})
        if key == "tokenizer.ggml.tokens":
            vocab = int(value)
        elif key == "tokenizer.ggml.merges":
            merges = int(value)
        meta[key] = value if kind != _ARRAY else None
    alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    valid = isinstance(alignment, int) and not isinstance(alignment, bool) and alignment > 0
    if not valid or alignment & (alignment - 1):
        raise InvalidModelFile(f"malformed GGUF: general.alignment must be a power of two, not {alignment!r}")
    sizes = _type_sizes()
    tensors: list[tuple[str, int, int]] = []  # name, offset, bytes
    by_type: dict[str, int] = {}
    classifier: dict[str, int] = {}  # classification head tensor -> its outputs
    names: set[str] = set()
    count = 0
    for _ in range(n_tensors):
        name = r.string("tensor name", MAX_KEY)
        if len(name.encode()) > MAX_TENSOR_NAME:
            raise InvalidModelFile(f"malformed GGUF: tensor name {name[:40]!r}... is too long")
        if name in names:
            raise InvalidModelFile(f"malformed GGUF: duplicate tensor {name!r}")
        names.add(name)
        n_dims = r.u32(f"dimensions of {name!r}")
        if not 1 <= n_dims <= MAX_DIMS:
            raise InvalidModelFile(f"malformed GGUF: tensor {name!r} has {n_dims} dimensions (1 to 4)")
        dims = [r.u64(f"shape of {name!r}") for _ in range(n_dims)]
        elements = 1
        for d in dims:
            elements *= d
            if d == 0 or elements > MAX_ELEMENTS:
                raise InvalidModelFile(f"malformed GGUF: tensor {name!r} has an invalid shape {dims}")
        kind = r.u32(f"type of {name!r}")
        if kind not in sizes:
            raise InvalidModelFile(f"malformed GGUF: tensor {name!r} has unknown type {kind}")
        block, block_bytes = sizes[kind]
        if dims[0] % block:
            raise InvalidModelFile(f"malformed GGUF: tensor {name!r} rows are not a whole number of blocks")
        offset = r.u64(f"offset of {name!r}")
        if offset % alignment:
            raise InvalidModelFile(f"malformed GGUF: tensor {name!r} is not aligned to {alignment}")
        tensors.append((name, offset, elements // block * block_bytes))
        type_name = _type_name(kind)
        by_type[type_name] = by_type.get(type_name, 0) + elements // block * block_bytes
        if name in ("cls.output.weight", "cls.weight") and len(dims) == 2:
            classifier[name] = int(dims[1])
        count += elements
    data_start = -(-r.pos // alignment) * alignment
    data_size = r.size - data_start
    if not tensors:
        raise InvalidModelFile("malformed GGUF: no tensors")
    for name, offset, nbytes in tensors:
        if offset + nbytes > data_size:
            raise InvalidModelFile(f"malformed GGUF: data of tensor {name!r} lies past the end of the file")
    spans = sorted((offset, offset + nbytes, name) for name, offset, nbytes in tensors)
    for (_, end, first), (start, _, second) in itertools.pairwise(spans):
        if start < end:
            raise InvalidModelFile(f"malformed GGUF: tensors {first!r} and {second!r} overlap")
    outputs = classifier.get("cls.output.weight", classifier.get("cls.weight", 0))
    return dataclasses.replace(
        _info(meta, count, vocab), merges=merges, tensor_bytes=by_type, classifier_outputs=outputs
    )


def _type_name(kind: int) -> str:
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType(kind).name
    except ValueError:
        return str(kind)


def _info(meta: dict[str, Any], count: int, vocab: int) -> GGUFInfo:
    from gguf import LlamaFileType

    arch = meta.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise InvalidModelFile("malformed GGUF: general.architecture is missing")
    try:
        ftype = LlamaFileType(int(meta.get("general.file_type", -1))).name.removeprefix("MOSTLY_")
    except (ValueError, TypeError):
        ftype = "unknown"
    template = meta.get("tokenizer.chat_template")

    def number(key: str) -> int:
        value = meta.get(key, 0)
        return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0

    scalars = {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}
    scalars.pop("tokenizer.chat_template", None)
    return GGUFInfo(
        architecture=arch,
        name=str(meta.get("general.name", "")),
        file_type=ftype,
        parameter_count=count,
        size_label=str(meta.get("general.size_label") or _size_label(count)),
        context_length=number(f"{arch}.context_length"),
        embedding_length=number(f"{arch}.embedding_length"),
        chat_template=template if isinstance(template, str) and template else None,
        vocab_size=vocab,
        metadata=scalars,
    )
