"""The model-format seam (formats/): each format answers the same questions (facts,
capabilities, KV type, memory, load spec, weights, scorer) for its kind of stored model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmkit.config import Config
from slmkit.errors import InvalidRequest
from slmkit.formats import COMPLETION, EMBEDDING, INSERT, format_named, format_of
from slmkit.names import ModelName
from slmkit.store import ModelStore
from tests.ggufs import write_tiny_gguf
from tests.unit.store.test_onnx_folder import _folder

FIM = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>"]


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    store = ModelStore(tmp_path / "store")
    store.import_gguf("tiny:1", write_tiny_gguf(tmp_path / "tiny.gguf"))
    folder = _folder(tmp_path / "smol-cpu-int4")
    added = [{"id": 100 + i, "content": name, "special": True} for i, name in enumerate(FIM)]
    (folder / "tokenizer.json").write_text(json.dumps({"added_tokens": added}))
    store.import_folder("smol:onnx", folder)
    return store


def test_each_stored_model_has_one_format_with_its_own_answers(store: ModelStore) -> None:
    config = Config.from_env({"SLM_KV_CACHE_TYPE": "q8_0", "SLM_FLASH_ATTENTION": "on"})
    gguf, onnx = store.get("tiny:1"), store.get("smol:onnx")
    g, o = format_of(gguf), format_of(onnx)
    assert (g.name, g.backend, g.runtime) == ("gguf", "llama", "llama.cpp")
    assert (o.name, o.backend, o.runtime) == ("onnx", "onnx", "ONNX Runtime GenAI")
    gf, of = g.facts(gguf), o.facts(onnx)
    assert COMPLETION in g.capabilities(gf) and EMBEDDING in g.capabilities(gf)
    assert o.capabilities(of) == {COMPLETION, INSERT}  # b"graph" outputs no hidden states
    # SLM_KV_CACHE_TYPE applies to llama.cpp; an ONNX graph keeps its KV in its own type
    assert (g.kv_type(gf, config.kv_cache_type), o.kv_type(of, config.kv_cache_type)) == ("q8_0", "f32")
    spec = o.load_spec(o.prepare(store, onnx), of, config, n_ctx=512, n_parallel=2, adapters=())
    assert (spec.backend, spec.fim, spec.embedding_output, spec.n_parallel) == (
        "onnx",
        (100, 101, 102),
        "",
        2,
    )
    assert Path(spec.model_path).is_dir() and (Path(spec.model_path) / "genai_config.json").is_file()
    spec = g.load_spec(g.prepare(store, gguf), gf, config, n_ctx=512, n_parallel=1, adapters=())
    assert (spec.backend, spec.kv_cache_type, spec.flash_attention, spec.fim) == ("llama", "q8_0", "on", None)
    assert o.weights_bytes(onnx) == 4096 + len(b"graph")  # the graph and its data, not the JSON
    assert 0 < g.weights_bytes(gguf) <= gguf.model_path.stat().st_size
    # an ONNX estimate never counts repacked weights (llama.cpp's CPU repack is GGUF-only)
    assert o.estimate(of, 512, 1, kv_type="f32").repacked == 0


def test_create_derives_through_the_format(store: ModelStore) -> None:
    from slmkit.formats import Layers

    layers = Layers("{{ x }}", "be brief", {"temperature": 0.1}, None, None)
    onnx = store.get("smol:onnx")
    made = format_of(onnx).derive(store, ModelName.parse("brief:onnx"), "", onnx, layers, None)
    assert format_of(made).name == "onnx" and made.system == "be brief"
    with pytest.raises(InvalidRequest, match="adapters: LoRA adapters are not supported for ONNX"):
        format_of(onnx).derive(
            store, ModelName.parse("x:1"), "", onnx, layers, {"a.gguf": "sha256:" + "0" * 64}
        )


def test_an_unknown_format_is_refused_by_name() -> None:
    with pytest.raises(InvalidRequest, match="unknown model format 'safetensors'"):
        format_named("safetensors")
