"""ONNX Runtime GenAI model folders: the gate before the store, and the facts we read.

A folder (what ``onnxruntime_genai.models.builder``, Olive and Foundry Local produce, and
what Microsoft publishes per variant on the Hub) holds ``genai_config.json``, the decoder
graph it names (``model.onnx``), its external weights (``model.onnx.data``), the tokenizer
(``tokenizer.json``, ``tokenizer_config.json``) and optionally a chat template. The store
keeps each file as a blob whose name is recorded in its layer; the worker loads a
directory view of hard links (store.py).

Nothing here imports onnxruntime: checks and facts come from the JSON files, so the API
process can gate and describe a model without the runtime.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from slmkit.errors import InvalidModelFile
from slmkit.store.gguf_info import GGUFInfo

GENAI_CONFIG = "genai_config.json"
TOKENIZER = "tokenizer.json"
MAX_FILES = 64  # a variant folder holds a handful; more is not a model folder


def weights_bytes(files: dict[str, Path]) -> int:
    """Bytes of the graphs and their external data (model.onnx, model.onnx.data), not the
    configuration, tokenizer or template files beside them."""
    return sum(path.stat().st_size for name, path in files.items() if ".onnx" in name)


MAX_JSON_BYTES = 16 * 1024 * 1024  # tokenizer.json of a 256k vocabulary is ~ 10 MB
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
# Model types of the builder's decoder layout (GroupQueryAttention with a KV cache input per
# layer) that engine/backends/onnx.py drives. Other files a folder carries (licenses, model
# cards) are stored too, so a folder stays what its publisher made; only their names are checked.
SUPPORTED_TYPES = (
    *("llama", "mistral", "qwen2", "qwen3", "phi3", "phi"),
    *("gemma", "gemma2", "gemma3_text", "smollm3"),
)


def check_name(name: str) -> str:
    """A file name a folder (or a pull) may use: flat, no path tricks, no hidden files."""
    if not _NAME.match(name) or ".." in name:
        raise InvalidModelFile(f"ONNX model folder: file name {name[:80]!r} is not allowed")
    return name


def folder_files(folder: Path) -> dict[str, Path]:
    """The folder's files by name, after the checks every ONNX folder must pass (see
    :func:`check_files`)."""
    if not folder.is_dir():
        raise InvalidModelFile("ONNX model folder: not a folder")
    files: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue  # .gitattributes, .cache: not part of the model
        if entry.is_symlink() or not entry.is_file():
            raise InvalidModelFile(
                f"ONNX model folder: {entry.name[:80]!r} is not a regular file "
                "(links and subfolders are refused)"
            )
        files[check_name(entry.name)] = entry
        if len(files) > MAX_FILES:
            raise InvalidModelFile(f"ONNX model folder: more than {MAX_FILES} files")
    check_files({name: path for name, path in files.items()})
    return files


def _json(path: Path, what: str) -> dict[str, Any]:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise InvalidModelFile(f"ONNX model folder: {what} is larger than {MAX_JSON_BYTES} bytes")
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidModelFile(f"ONNX model folder: {what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise InvalidModelFile(f"ONNX model folder: {what} is not a JSON object")
    return value


def check_files(files: dict[str, Path]) -> dict[str, Any]:
    """Check a folder's file set (names -> paths); return its genai_config. Refuses a
    missing or malformed genai_config.json, a decoder graph or tokenizer it lacks, a model
    type we cannot serve, and nonsense shapes."""
    for name in files:
        check_name(name)
    if GENAI_CONFIG not in files:
        raise InvalidModelFile(f"ONNX model folder: {GENAI_CONFIG} is missing")
    config = _json(files[GENAI_CONFIG], GENAI_CONFIG)
    model = config.get("model")
    decoder = model.get("decoder") if isinstance(model, dict) else None
    if not isinstance(model, dict) or not isinstance(decoder, dict):
        raise InvalidModelFile(f"ONNX model folder: {GENAI_CONFIG} has no model.decoder section")
    graph = decoder.get("filename")
    if not isinstance(graph, str):
        raise InvalidModelFile(f"ONNX model folder: {GENAI_CONFIG}: model.decoder.filename is missing")
    if check_name(graph) not in files:
        raise InvalidModelFile(f"ONNX model folder: the decoder graph {graph!r} is missing")
    if TOKENIZER not in files:
        raise InvalidModelFile(f"ONNX model folder: {TOKENIZER} is missing")
    kind = model.get("type")
    if kind not in SUPPORTED_TYPES:
        raise InvalidModelFile(
            f"ONNX model folder: model type {str(kind)[:40]!r} is not supported "
            f"(decoder-only text models: {', '.join(SUPPORTED_TYPES)})"
        )
    for key in ("num_hidden_layers", "num_key_value_heads", "head_size", "hidden_size"):
        value = decoder.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1 << 16:
            raise InvalidModelFile(
                f"ONNX model folder: {GENAI_CONFIG}: model.decoder.{key} is not a valid size"
            )
    for key in ("vocab_size", "context_length"):
        value = model.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= 1 << 24:
            raise InvalidModelFile(f"ONNX model folder: {GENAI_CONFIG}: model.{key} is not a valid size")
    return config


def chat_template(files: dict[str, Path]) -> str | None:
    """The folder's chat template: chat_template.jinja, else tokenizer_config.json's."""
    if "chat_template.jinja" in files:
        try:
            return files["chat_template.jinja"].read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidModelFile("ONNX model folder: chat_template.jinja is not UTF-8 text") from exc
    if "tokenizer_config.json" in files:
        template = _json(files["tokenizer_config.json"], "tokenizer_config.json").get("chat_template")
        if isinstance(template, str):
            return template
    return None


# Fill-in-the-middle tokens (prefix, suffix, middle) by the names model families give them,
# as llama.cpp's converter recognizes them.
FIM_NAMES = (
    ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),  # StarCoder, SmolLM, Granite code
    ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),  # Qwen2.5-Coder, Qwen3
    ("<\uff5cfim\u2581begin\uff5c>", "<\uff5cfim\u2581hole\uff5c>", "<\uff5cfim\u2581end\uff5c>"),  # DeepSeek
)


def fim_tokens(tokenizer: dict[str, Any]) -> tuple[int, int, int] | None:
    """A parsed tokenizer.json's fill-in-the-middle token ids, or None if it has none."""
    added = tokenizer.get("added_tokens")
    ids = {
        t.get("content"): t.get("id") for t in added if isinstance(t, dict)
    } if isinstance(added, list) else {}  # fmt: skip
    for names in FIM_NAMES:
        found = [ids.get(name) for name in names]
        if all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in found):
            return found[0], found[1], found[2]  # type: ignore[return-value]
    return None


# The builder's final-norm output (`slm convert --to onnx` asks for it): what embeddings pool.
HIDDEN_STATES = "hidden_states"
MAX_GRAPH_PARSE = 64 * 1024 * 1024  # a graph with external weights is well under this


def graph_outputs(graph: Path) -> list[str]:
    """The decoder graph's output names, read without its external weights; [] when onnx
    is not installed, the graph cannot be read, or it is larger than MAX_GRAPH_PARSE (its
    weights inline: not worth parsing in the API process)."""
    try:
        import onnx
    except ImportError:
        return []
    try:
        if graph.stat().st_size > MAX_GRAPH_PARSE:
            return []
        model = onnx.load_model(str(graph), load_external_data=False)
    except Exception:  # protobuf's DecodeError, onnx's own, OSError: not a readable graph
        return []
    return [str(output.name) for output in model.graph.output]


def precision(files: dict[str, Path], hint: str = "") -> str:
    """A label for the weights' precision: int4, int8, fp16, bf16 or fp32 when the file or
    folder names say (the builder's and Microsoft's variant folders do: cpu-int4-rtn-block-32)."""
    text = " ".join([hint, *files]).lower()
    for key in ("int4", "int8", "fp16", "bf16", "fp32"):
        if key in text:
            return key
    return "onnx"


def read_folder_info(files: dict[str, Path], precision_hint: str = "") -> GGUFInfo:
    """A folder's facts in the shape the rest of slmkit reads (memory estimate, `show`,
    profiles): metadata keys named as a GGUF would name them."""
    config = check_files(files)
    model, decoder = config["model"], config["model"]["decoder"]
    arch = str(model["type"])
    layers, kv_heads = decoder["num_hidden_layers"], decoder["num_key_value_heads"]
    head = decoder["head_size"]
    heads = decoder.get("num_attention_heads", kv_heads)
    width, vocab = decoder["hidden_size"], model["vocab_size"]
    weights = weights_bytes(files)
    kind = precision(files, precision_hint)
    # parameters: bytes over bits per weight (int4 ~ 4.5 bits with scales); a size label only
    bits = {"int4": 4.5, "int8": 8.5, "fp16": 16, "bf16": 16, "fp32": 32}.get(kind, 16)
    params = int(weights * 8 / bits)
    metadata: dict[str, Any] = {
        "general.architecture": arch,
        f"{arch}.block_count": layers,
        f"{arch}.attention.head_count": heads if isinstance(heads, int) else kv_heads,
        f"{arch}.attention.head_count_kv": kv_heads,
        f"{arch}.attention.key_length": head,
        f"{arch}.attention.value_length": head,
        f"{arch}.context_length": model["context_length"],
        f"{arch}.embedding_length": width,
        "onnx.decoder": decoder["filename"],
    }
    if HIDDEN_STATES in graph_outputs(files[decoder["filename"]]):  # embeddings (answer/profile.py)
        metadata["onnx.hidden_states"] = True
    fim = fim_tokens(_json(files[TOKENIZER], TOKENIZER))
    if fim is not None:  # the keys a GGUF names them by (answer/profile.py: the insert capability)
        for key, token in zip(("pre", "suf", "mid"), fim, strict=True):
            metadata[f"tokenizer.ggml.fim_{key}_token_id"] = token
    return GGUFInfo(
        architecture=arch,
        name="",
        file_type=kind,
        parameter_count=params,
        size_label=_size_label(params),
        context_length=int(model["context_length"]),
        embedding_length=int(width),
        chat_template=chat_template(files),
        vocab_size=int(vocab),
        metadata=metadata,
        tensor_bytes={kind: weights},
    )


def _size_label(n: int) -> str:
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{round(n / 1e6)}M"
