"""BERT conversion's pure parts: pooling from sentence-transformers' config, the WordPiece
vocabulary in llama.cpp's phantom-space form, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from slmkit.errors import InvalidRequest
from slmkit.optimize.convert_bert import pooling, read_wordpiece

VOCAB = {"[PAD]": 0, "[unused0]": 1, "[UNK]": 2, "[CLS]": 3, "[SEP]": 4, "[MASK]": 5, "hello": 6, "##ing": 7}


def folder(tmp_path: Path, pool: dict[str, Any] | None = None, **tok: Any) -> Path:
    tokenizer = {
        "model": {"type": "WordPiece", "vocab": VOCAB},
        "normalizer": {"type": "BertNormalizer", "lowercase": True},
        "added_tokens": [
            {"content": t, "special": True} for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
        ],
        **tok,
    }
    (tmp_path / "tokenizer.json").write_text(json.dumps(tokenizer))
    if pool is not None:
        (tmp_path / "1_Pooling").mkdir()
        (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps(pool))
    return tmp_path


def test_the_vocabulary_takes_llama_cpps_phantom_space_form(tmp_path: Path) -> None:
    tokens, types, ids = read_wordpiece(folder(tmp_path))
    assert tokens == ["[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "\u2581hello", "ing"]
    assert types == [3, 1, 3, 3, 3, 3, 1, 1]
    assert ids == {"unk": 2, "cls": 3, "sep": 4, "pad": 0, "mask": 5}


@pytest.mark.parametrize(
    ("pool", "kind"),
    [
        (None, "MEAN"),
        ({"pooling_mode_mean_tokens": True}, "MEAN"),
        ({"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}, "CLS"),
        ({"pooling_mode_lasttoken": True}, "LAST"),
    ],
)
def test_pooling_comes_from_sentence_transformers(
    tmp_path: Path, pool: dict[str, Any] | None, kind: str
) -> None:
    assert pooling(folder(tmp_path, pool)) == kind


@pytest.mark.parametrize(
    "pool",
    [
        {"pooling_mode_max_tokens": True},
        {"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True},
        {},
    ],
)
def test_poolings_llama_cpp_lacks_are_refused(tmp_path: Path, pool: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="pooling"):
        pooling(folder(tmp_path, pool))


@pytest.mark.parametrize(
    ("tok", "message"),
    [
        ({"normalizer": {"type": "BertNormalizer", "lowercase": False}}, "cased"),
        ({"model": {"type": "BPE", "vocab": VOCAB}}, "not WordPiece"),
        ({"model": {"type": "WordPiece", "vocab": {"a": 0, "b": 5}}}, "0..n-1"),
        ({"model": {"type": "WordPiece", "vocab": {"a": 0}}}, "no cls, sep, unk"),
    ],
)
def test_vocabularies_it_cannot_store_are_refused(tmp_path: Path, tok: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        read_wordpiece(folder(tmp_path, **tok))
