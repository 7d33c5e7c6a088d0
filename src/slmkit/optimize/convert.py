"""`slm convert`: a Hugging Face model folder (config.json, *.safetensors, tokenizer.json)
to a GGUF file llama.cpp loads, written with gguf-py's writer and tensor-name maps.

Supported: Llama-family decoders (``llama``, which covers SmolLM, Llama 2/3, Mistral
dense), ``qwen2`` and ``qwen3``, with byte-level BPE tokenizers (tokenizer.json), and BERT
sentence-embedding encoders (optimize/convert_bert.py); each is
checked against transformers' logits in tests/integration/test_convert.py. Phi-3/Phi-4
(``phi3``: llama.cpp's loader rejected our test vocabulary), Gemma 3 and SentencePiece
tokenizers (tokenizer.model) are refused with a clear error. Weights are read from
safetensors without torch (F32, F16, BF16).

What llama.cpp expects that Hugging Face stores differently:
- Llama's rotary embedding pairs dimensions (i, i + d/2); llama.cpp's "normal" RoPE pairs
  (2i, 2i + 1), so Q and K rows are permuted per head (Qwen uses NEOX RoPE: kept).
- Llama 3.1+ "llama3" RoPE scaling becomes a ``rope_freqs`` tensor of per-frequency factors.
- The pre-tokenizer (how text is split before BPE) is named, not stored: it is recognised
  from tokenizer.json's regular expressions.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import InvalidRequest, StoreError

ARCHITECTURES = {  # config.json architectures[0] or model_type -> llama.cpp architecture
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "BertModel": "bert",  # sentence-embedding encoders (optimize/convert_bert.py)
    "llama": "llama",
    "mistral": "llama",
    "qwen2": "qwen2",
    "qwen3": "qwen3",
}
OUTTYPES = ("f32", "f16", "bf16", "q8_0")
# --outtype -> gguf.LlamaFileType name
FILE_TYPES = {"f32": "ALL_F32", "f16": "MOSTLY_F16", "bf16": "MOSTLY_BF16", "q8_0": "MOSTLY_Q8_0"}

# tokenizer.json pre-tokenizer regexes -> llama.cpp's pre-tokenizer names
_LLAMA3 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_GPT4O = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
PRE_TOKENIZERS = {_LLAMA3: "llama-bpe", _QWEN2: "qwen2", _GPT4O: "gpt-4o"}


# -- safetensors, read without torch ------------------------------------------------------------

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F64": np.float64}


def read_safetensors(path: Path, skip: tuple[str, ...] = ()) -> Iterator[tuple[str, np.ndarray]]:
    """(name, float32 array) for each tensor of a .safetensors file, memory-mapped; names
    starting with one of ``skip`` are passed over unread."""
    try:
        with path.open("rb") as fh:
            (length,) = struct.unpack("<Q", fh.read(8))
            if not 0 < length < 100 * 1024 * 1024:
                raise InvalidRequest(f"{path.name}: not a safetensors file (bad header length)")
            header = json.loads(fh.read(length))
    except (OSError, ValueError, struct.error) as exc:
        raise InvalidRequest(f"{path.name}: not a readable safetensors file ({exc})") from exc
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + length)
    for name, meta in header.items():
        if name == "__metadata__" or name.startswith(skip):
            continue
        dtype = _DTYPES.get(meta.get("dtype"))
        if dtype is None:
            raise InvalidRequest(f"{path.name}: tensor {name} has unsupported dtype {meta.get('dtype')}")
        start, end = meta["data_offsets"]
        if not 0 <= start <= end <= len(data):
            raise InvalidRequest(f"{path.name}: tensor {name} lies outside the file")
        raw = np.frombuffer(data[start:end], dtype=dtype).reshape(meta["shape"])
        if meta["dtype"] == "BF16":
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        yield name, raw.astype(np.float32)


# -- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class HFModel:
    folder: Path
    config: dict[str, Any]
    arch: str  # llama.cpp architecture

    def hp(self, *keys: str, default: Any = None) -> Any:
        for key in keys:
            if key in self.config and self.config[key] is not None:
                return self.config[key]
        if default is None:
            raise InvalidRequest(f"config.json: {keys[0]} is missing")
        return default

    @property
    def rope_theta(self) -> float:
        params = self.config.get("rope_parameters") or {}
        return float(params.get("rope_theta") or self.config.get("rope_theta") or 10000.0)

    @property
    def rope_scaling(self) -> dict[str, Any]:
        scaling = self.config.get("rope_scaling") or self.config.get("rope_parameters") or {}
        kind = scaling.get("rope_type") or scaling.get("type") or "default"
        return {**scaling, "kind": kind}


def open_model(folder: Path) -> HFModel:
    try:
        config = json.loads((folder / "config.json").read_text())
    except FileNotFoundError:
        raise InvalidRequest(
            f"{folder.name}: no config.json (is this a Hugging Face model folder?)"
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"config.json: not valid JSON ({exc})") from exc
    names = [*(config.get("architectures") or []), config.get("model_type", "")]
    arch = next((ARCHITECTURES[n] for n in names if n in ARCHITECTURES), None)
    if arch is None:
        raise InvalidRequest(
            f"config.json: architecture {names[0] or 'unknown'!r} is not supported by `slm convert` "
            f"(supported: {', '.join(sorted({k for k in ARCHITECTURES if k[0].isupper()}))})"
        )
    return HFModel(folder, config, arch)


# -- tokenizer ----------------------------------------------------------------------------------


@dataclass
class Vocab:
    tokens: list[str]
    types: list[int]
    merges: list[str]
    pre: str
    special: dict[str, int]  # bos, eos, unk, pad -> id
    add_bos: bool
    chat_template: str | None


def _pre_name(pre: dict[str, Any] | None) -> str:
    if pre is None:
        raise InvalidRequest("tokenizer.json: no pre_tokenizer")
    steps: list[dict[str, Any]] = (pre.get("pretokenizers") or []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits"):
        return "smollm"
    for step in steps:
        if step.get("type") == "Split":
            regex = (step.get("pattern") or {}).get("Regex", "")
            if regex in PRE_TOKENIZERS:
                return PRE_TOKENIZERS[regex]
    raise InvalidRequest(
        f"tokenizer.json: pre-tokenizer {kinds} is not one `slm convert` recognises "
        "(GPT-2, SmolLM/StarCoder, Llama 3, Qwen 2/3, GPT-4o styles)"
    )


def read_vocab(model: HFModel) -> Vocab:
    folder = model.folder
    if not (folder / "tokenizer.json").is_file():
        hint = (
            " (SentencePiece tokenizer.model is not supported yet)"
            if (folder / "tokenizer.model").exists()
            else ""
        )
        raise InvalidRequest(f"{folder.name}: no tokenizer.json{hint}")
    try:
        tok = json.loads((folder / "tokenizer.json").read_text())
        tok_config = (
            json.loads((folder / "tokenizer_config.json").read_text())
            if (folder / "tokenizer_config.json").is_file()
            else {}
        )
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"tokenizer files: not valid JSON ({exc})") from exc
    bpe = tok.get("model") or {}
    if bpe.get("type") != "BPE":
        raise InvalidRequest(f"tokenizer.json: model type {bpe.get('type')!r} is not BPE")
    vocab: dict[str, int] = dict(bpe.get("vocab") or {})
    added = {t["content"]: t for t in tok.get("added_tokens", [])}
    for content, t in added.items():
        vocab[content] = t["id"]
    size = max(int(model.config.get("vocab_size") or 0), max(vocab.values()) + 1)
    tokens = [f"[PAD{i}]" for i in range(size)]
    types = [5] * size  # UNUSED
    for text, i in vocab.items():
        tokens[i] = text
        info = added.get(text)
        types[i] = 1 if info is None else (3 if info.get("special") else 4)  # NORMAL, CONTROL, USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in bpe.get("merges", [])]

    def token_id(key: str, config_key: str) -> int | None:
        value = tok_config.get(key)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in vocab:
            return vocab[value]
        raw = model.config.get(config_key)
        return int(raw[0] if isinstance(raw, list) else raw) if raw is not None else None

    special = {
        name: i
        for name, i in (
            ("bos", token_id("bos_token", "bos_token_id")),
            ("eos", token_id("eos_token", "eos_token_id")),
            ("unk", token_id("unk_token", "unk_token_id")),
            ("pad", token_id("pad_token", "pad_token_id")),
        )
        if i is not None
    }
    add_bos = bool(tok_config.get("add_bos_token", False))
    post = tok.get("post_processor") or {}
    steps = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for step in steps:
        single = step.get("single") or []
        if step.get("type") == "TemplateProcessing" and single and "SpecialToken" in single[0]:
            add_bos = True
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t["template"] for t in template if t.get("name") == "default"), None)
    if template is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text()
    return Vocab(tokens, types, merges, _pre_name(tok.get("pre_tokenizer")), special, add_bos, template)


# -- tensors ------------------------------------------------------------------------------------


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's rotate-half Q/K rows -> llama.cpp's interleaved pairs, per head."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _llama3_rope_factors(model: HFModel, head_dim: int) -> np.ndarray:
    s = model.rope_scaling
    factor = float(s.get("factor", 8.0))
    low, high = float(s.get("low_freq_factor", 1.0)), float(s.get("high_freq_factor", 4.0))
    old = float(s.get("original_max_position_embeddings", 8192))
    freqs = 1.0 / (model.rope_theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < old / high:
            out.append(1.0)
        elif wavelen > old / low:
            out.append(factor)
        else:
            smooth = (old / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.asarray(out, dtype=np.float32)


def _tensors(model: HFModel, skip: tuple[str, ...] = ()) -> Iterator[tuple[str, np.ndarray]]:
    files = sorted(model.folder.glob("*.safetensors"))
    if not files:
        raise InvalidRequest(f"{model.folder.name}: no .safetensors files (PyTorch .bin is not supported)")
    for path in files:
        yield from read_safetensors(path, skip)


def convert(folder: Path, out: Path, outtype: str = "f16") -> Path:
    """Write the GGUF for the Hugging Face model in ``folder`` at ``out`` (atomically)."""
    import gguf

    if outtype not in OUTTYPES:
        raise InvalidRequest(f"--outtype: {outtype!r} is not one of {', '.join(OUTTYPES)}")
    model = open_model(folder)
    if model.arch == "bert":
        from slmkit.optimize.convert_bert import convert_bert

        return convert_bert(model, out, outtype)
    vocab = read_vocab(model)
    hidden = int(model.hp("hidden_size"))
    heads = int(model.hp("num_attention_heads"))
    kv_heads = int(model.hp("num_key_value_heads", default=heads))
    layers = int(model.hp("num_hidden_layers"))
    head_dim = int(model.hp("head_dim", default=hidden // heads))
    with gguf_file(out, model.arch) as writer:
        _write_header(writer, model, vocab, hidden, heads, kv_heads, layers, head_dim, outtype)
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[_arch_enum(model.arch)], layers)
        if model.rope_scaling["kind"] == "llama3":
            writer.add_tensor("rope_freqs.weight", _llama3_rope_factors(model, head_dim))
        tied = bool(model.config.get("tie_word_embeddings", False))
        count = 0
        for name, data in _tensors(model):
            if name.endswith(("rotary_emb.inv_freq", "masked_bias")) or (tied and name == "lm_head.weight"):
                continue
            target = names.get_name(name, try_suffixes=(".weight", ".bias"))
            if target is None:
                raise InvalidRequest(
                    f"tensor {name}: no llama.cpp name for it in the {model.arch} architecture"
                )
            if model.arch == "llama" and name.endswith("q_proj.weight"):
                data = _permute(data, heads)
            elif model.arch == "llama" and name.endswith("k_proj.weight"):
                data = _permute(data, kv_heads)
            _add(writer, target, data, outtype)
            count += 1
        if not count:
            raise InvalidRequest("no tensors found")
    return out


@contextlib.contextmanager
def gguf_file(out: Path, arch: str) -> Iterator[Any]:
    """A GGUF writer whose file appears at ``out`` only when the block completes: written
    under a hidden temporary name, renamed at the end, removed on any failure."""
    import gguf

    tmp = out.with_name(f".{out.name}.partial")
    writer = gguf.GGUFWriter(tmp, arch, use_temp_file=True)
    try:
        yield writer
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    except OSError as exc:
        raise StoreError(f"could not write {out.name}: {exc.strerror}") from exc
    finally:
        writer.close()
        spool = getattr(writer, "temp_file", None)
        if spool is not None:  # left open when a failure came before the tensors were written
            spool.close()
        tmp.unlink(missing_ok=True)


def _arch_enum(arch: str) -> str:
    import gguf

    return next(k.name for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)


def _add(writer: Any, name: str, data: np.ndarray, outtype: str) -> None:
    import gguf

    if data.ndim < 2 or outtype == "f32":  # norms, biases, factors: llama.cpp wants F32
        writer.add_tensor(name, np.ascontiguousarray(data, dtype=np.float32))
    elif outtype == "f16":
        writer.add_tensor(name, data.astype(np.float16))
    else:
        qtype = gguf.GGMLQuantizationType.BF16 if outtype == "bf16" else gguf.GGMLQuantizationType.Q8_0
        if outtype == "q8_0" and data.shape[-1] % 32:
            writer.add_tensor(name, data.astype(np.float16))  # rows not whole Q8_0 blocks
            return
        writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)


def _write_header(
    w: Any,
    model: HFModel,
    vocab: Vocab,
    hidden: int,
    heads: int,
    kv_heads: int,
    layers: int,
    head_dim: int,
    outtype: str,
) -> None:
    import gguf

    cfg = model.config
    w.add_type("model")
    w.add_name(str(cfg.get("_name_or_path") or model.folder.name).rsplit("/", 1)[-1])
    w.add_context_length(int(model.hp("max_position_embeddings")))
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(int(model.hp("intermediate_size")))
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_layer_norm_rms_eps(float(model.hp("rms_norm_eps", default=1e-6)))
    w.add_rope_freq_base(model.rope_theta)
    w.add_vocab_size(len(vocab.tokens))
    rotary = float(cfg.get("partial_rotary_factor") or 1.0)
    w.add_rope_dimension_count(int(head_dim * rotary))
    if head_dim != hidden // heads or model.arch == "qwen3":
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    scaling = model.rope_scaling
    if scaling["kind"] == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(float(scaling["factor"]))
    elif scaling["kind"] == "yarn":
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(float(scaling["factor"]))
        w.add_rope_scaling_orig_ctx_len(int(scaling["original_max_position_embeddings"]))
    elif scaling["kind"] not in {"default", "llama3"}:
        raise InvalidRequest(f"config.json: rope scaling {scaling['kind']!r} is not supported")
    w.add_file_type(int(gguf.LlamaFileType[FILE_TYPES[outtype]]))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(vocab.pre)
    w.add_token_list(vocab.tokens)
    w.add_token_types(vocab.types)
    w.add_token_merges(vocab.merges)
    adders = {
        "bos": w.add_bos_token_id,
        "eos": w.add_eos_token_id,
        "unk": w.add_unk_token_id,
        "pad": w.add_pad_token_id,
    }
    for key, token in vocab.special.items():
        adders[key](token)
    w.add_add_bos_token(vocab.add_bos)
    if vocab.chat_template:
        w.add_chat_template(vocab.chat_template)
