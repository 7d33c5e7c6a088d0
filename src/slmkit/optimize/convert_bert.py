"""`slm convert` for BERT-family sentence-embedding models (``BertModel``: all-MiniLM,
bge-small, e5-small...): encoder-only, so the GGUF says non-causal attention and how to pool.

What llama.cpp expects that Hugging Face stores differently:
- The WordPiece vocabulary is stored with a "phantom space": a word-start piece gets "▁" in
  front, a continuation piece ("##ing") loses its "##"; bracketed pieces ([CLS], [unused0])
  stay as they are. llama.cpp's WPM tokenizer lowercases, so only uncased vocabularies are
  accepted.
- The pooling (mean, CLS or last token) comes from sentence-transformers' 1_Pooling/config.json
  and is written as ``bert.pooling_type``; slmkit's embeddings honour it. Sentence-transformers'
  Normalize step needs no key: slmkit's embeddings are always L2-normalized.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from slmkit.errors import InvalidRequest

_POOLING = {  # 1_Pooling/config.json flag -> gguf.PoolingType name
    "pooling_mode_mean_tokens": "MEAN",
    "pooling_mode_cls_token": "CLS",
    "pooling_mode_lasttoken": "LAST",
}
# a buffer, and the classification head's pooler (with or without the "bert." prefix)
_SKIP = ("embeddings.position_ids", "pooler.", "bert.embeddings.position_ids", "bert.pooler.")


def pooling(folder: Path) -> str:
    """MEAN, CLS or LAST from sentence-transformers' pooling config (MEAN without one)."""
    path = folder / "1_Pooling" / "config.json"
    if not path.is_file():
        return "MEAN"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"1_Pooling/config.json: not valid JSON ({exc})") from exc
    chosen = [kind for flag, kind in _POOLING.items() if config.get(flag)]
    others = [k for k, v in config.items() if k.startswith("pooling_mode") and v and k not in _POOLING]
    if others or len(chosen) != 1:
        raise InvalidRequest(
            f"1_Pooling/config.json: pooling {others or chosen or 'none'} is not one llama.cpp has "
            "(mean, CLS or last token)"
        )
    return chosen[0]


def read_wordpiece(folder: Path) -> tuple[list[str], list[int], dict[str, int]]:
    """Tokens (phantom-space form), token types, and special token ids by role."""
    try:
        tok = json.loads((folder / "tokenizer.json").read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"{folder.name}: no tokenizer.json") from None
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"tokenizer.json: not valid JSON ({exc})") from exc
    model = tok.get("model") or {}
    if model.get("type") != "WordPiece":
        raise InvalidRequest(f"tokenizer.json: model type {model.get('type')!r} is not WordPiece")
    normalizer = tok.get("normalizer") or {}
    if not normalizer.get("lowercase", False):
        raise InvalidRequest(
            "tokenizer.json: a cased WordPiece vocabulary (llama.cpp's BERT tokenizer lowercases)"
        )
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    if not vocab or sorted(vocab.values()) != list(range(len(vocab))):
        raise InvalidRequest("tokenizer.json: the vocabulary's ids are not 0..n-1")
    special = {t["content"] for t in tok.get("added_tokens", []) if t.get("special")}
    tokens, types = [""] * len(vocab), [1] * len(vocab)  # NORMAL
    for text, i in vocab.items():
        if text.startswith("[") and text.endswith("]"):
            tokens[i] = text
        elif text.startswith("##"):
            tokens[i] = text[2:]
        else:
            tokens[i] = "\u2581" + text
        if text in special:
            types[i] = 3  # CONTROL
    roles = {"unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "pad": "[PAD]", "mask": "[MASK]"}
    ids = {role: vocab[text] for role, text in roles.items() if text in vocab}
    missing = {"cls", "sep", "unk"} - set(ids)
    if missing:
        raise InvalidRequest(f"tokenizer.json: no {', '.join(sorted(missing))} token")
    return tokens, types, ids


def convert_bert(model: Any, out: Path, outtype: str) -> Path:
    """Write the GGUF of a BERT sentence-embedding model (``model``: convert.HFModel)."""
    import gguf

    from slmkit.optimize.convert import FILE_TYPES, _add, _tensors, gguf_file

    tokens, types, ids = read_wordpiece(model.folder)
    kind = pooling(model.folder)
    layers = int(model.hp("num_hidden_layers"))
    if model.config.get("position_embedding_type", "absolute") != "absolute":
        raise InvalidRequest("config.json: only absolute position embeddings are supported for BERT")
    with gguf_file(out, "bert") as w:
        w.add_type("model")
        w.add_name(str(model.config.get("_name_or_path") or model.folder.name).rsplit("/", 1)[-1])
        w.add_context_length(int(model.hp("max_position_embeddings")))
        w.add_embedding_length(int(model.hp("hidden_size")))
        w.add_block_count(layers)
        w.add_feed_forward_length(int(model.hp("intermediate_size")))
        w.add_head_count(int(model.hp("num_attention_heads")))
        w.add_layer_norm_eps(float(model.hp("layer_norm_eps", default=1e-12)))
        w.add_causal_attention(False)
        w.add_pooling_type(gguf.PoolingType[kind])
        w.add_token_type_count(int(model.hp("type_vocab_size", default=2)))
        w.add_file_type(int(gguf.LlamaFileType[FILE_TYPES[outtype]]))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_tokenizer_model("bert")
        w.add_tokenizer_pre("default")
        w.add_token_list(tokens)
        w.add_token_types(types)
        w.add_bos_token_id(ids["cls"])  # llama.cpp puts [CLS] first as the BOS token
        w.add_sep_token_id(ids["sep"])
        w.add_unk_token_id(ids["unk"])
        if "pad" in ids:
            w.add_pad_token_id(ids["pad"])
        if "mask" in ids:
            w.add_mask_token_id(ids["mask"])
        w.add_add_bos_token(True)
        w.add_add_sep_token(True)
        names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.BERT, layers)
        count = 0
        for name, data in _tensors(model, _SKIP):
            plain = name.removeprefix("bert.")
            target = names.get_name(plain, try_suffixes=(".weight", ".bias"))
            if target is None:
                raise InvalidRequest(f"tensor {name}: no llama.cpp name for it in the bert architecture")
            # llama.cpp adds the token-type row to the activations as is: it must be F32
            _add(w, target, data, "f32" if target.startswith("token_types") else outtype)
            count += 1
        if not count:
            raise InvalidRequest("no tensors found")
    return out
