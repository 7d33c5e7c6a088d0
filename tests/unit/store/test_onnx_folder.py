"""ONNX model folders in the store: the gate (names, links, config), multi-file manifests and
the hard-link views the worker loads; and `slm convert --to onnx`'s argument checks."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from slmkit.errors import ConversionFailed, InvalidModelFile, InvalidRequest
from slmkit.store import ModelStore
from slmkit.store.onnx_folder import check_name, folder_files, read_folder_info


def _folder(root: Path, **model: object) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    decoder = {
        "filename": "model.onnx", "num_hidden_layers": 30, "num_key_value_heads": 3, "head_size": 64,
        "hidden_size": 576, "num_attention_heads": 9,
    }  # fmt: skip
    config = {
        "model": {"type": "llama", "vocab_size": 49152, "context_length": 8192, "decoder": decoder, **model}
    }
    (root / "genai_config.json").write_text(json.dumps(config))
    (root / "model.onnx").write_bytes(b"graph")
    (root / "model.onnx.data").write_bytes(b"\0" * 4096)
    (root / "tokenizer.json").write_text("{}")
    (root / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    return root


@pytest.mark.parametrize("name", ["../x", "/etc/passwd", ".hidden", "a/b", "a\\b", "x" * 200, "", "-rf"])
def test_file_names_with_path_tricks_are_refused(name: str) -> None:
    with pytest.raises(InvalidModelFile, match="not allowed"):
        check_name(name)


def test_links_and_subfolders_are_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "m")
    (folder / "leak").symlink_to("/etc/hostname")
    with pytest.raises(InvalidModelFile, match="not a regular file"):
        folder_files(folder)
    (folder / "leak").unlink()
    (folder / "sub").mkdir()
    with pytest.raises(InvalidModelFile, match="not a regular file"):
        folder_files(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: (f / "genai_config.json").unlink(), "genai_config.json is missing"),
        (lambda f: (f / "genai_config.json").write_text("{nope"), "not valid JSON"),
        (lambda f: (f / "genai_config.json").write_text("[]"), "not a JSON object"),
        (lambda f: (f / "model.onnx").unlink(), "decoder graph 'model.onnx' is missing"),
        (lambda f: (f / "tokenizer.json").unlink(), "tokenizer.json is missing"),
        (lambda f: _folder(f, type="whisper"), "model type 'whisper' is not supported"),
        (lambda f: _folder(f, vocab_size=-1), "vocab_size is not a valid size"),
        (lambda f: _folder(f, decoder={"filename": "../model.onnx"}), "not allowed"),
    ],
)
def test_malformed_folders_are_refused_and_nothing_is_stored(
    tmp_path: Path, change: object, message: str
) -> None:
    folder = _folder(tmp_path / "m")
    change(folder)  # type: ignore[operator]
    store = ModelStore(tmp_path / "store")
    with pytest.raises(InvalidModelFile, match=message):
        store.import_folder("bad:onnx", folder)
    assert not store.exists("bad:onnx") and store.blobs.digests() == []


def test_a_folder_is_stored_file_by_file_and_viewed_through_hard_links(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    record = store.import_folder("smol:onnx", _folder(tmp_path / "smol-cpu-int4"))
    assert record.config.model_format == "onnx" and record.config.file_type == "int4"
    assert set(record.manifest.model_files) == {
        "chat_template.jinja", "genai_config.json", "model.onnx", "model.onnx.data", "tokenizer.json"
    }  # fmt: skip
    assert record.template == "{{ messages[0]['content'] }}"
    view = store.view(record)
    assert view == record.model_path and (view / "model.onnx.data").read_bytes() == b"\0" * 4096
    for name, blob in record.files.items():
        assert os.path.samefile(view / name, blob)
    (view / "model.onnx").unlink()  # a damaged view is laid out again
    assert store.view(record) == view and os.path.samefile(view / "model.onnx", record.files["model.onnx"])
    assert not [p for p in store.views.iterdir() if p.name.startswith(".partial-")]
    info = read_folder_info(record.files, "int4")
    assert info.metadata["llama.block_count"] == 30 and info.context_length == 8192
    store.delete("smol:onnx")
    assert not view.exists() and store.blobs.digests() == []


def test_convert_arguments_are_checked_before_the_builder_runs(tmp_path: Path) -> None:
    from slmkit.optimize.convert_onnx import check_arguments, convert_onnx

    hf = tmp_path / "hf"
    hf.mkdir()
    with pytest.raises(InvalidRequest, match="needs --device cuda"):
        check_arguments(hf, "fp16", "cpu")
    with pytest.raises(InvalidRequest, match=r"config\.json"):
        check_arguments(hf, "int4", "cpu")
    (hf / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(InvalidRequest, match="names no architecture"):
        check_arguments(hf, "int4", "cpu")
    (hf / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    with pytest.raises(InvalidRequest, match=r"tokenizer\.json"):
        check_arguments(hf, "int4", "cpu")
    (hf / "tokenizer.json").write_text("{}")
    assert check_arguments(hf, "int4", "cpu") == "LlamaForCausalLM"
    (tmp_path / "exists").mkdir()
    with pytest.raises(InvalidRequest, match="already exists"):
        convert_onnx(hf, tmp_path / "exists", "int4")


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime_genai") is None, reason="no ONNX builder")
def test_a_failing_build_leaves_nothing_behind(tmp_path: Path) -> None:
    from slmkit.optimize.convert_onnx import convert_onnx

    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"})
    )
    (hf / "tokenizer.json").write_text("{}")
    with pytest.raises(ConversionFailed, match="the ONNX builder failed"):
        convert_onnx(hf, tmp_path / "out", "int4")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_views_built_at_once_by_two_builders_end_intact(tmp_path: Path) -> None:
    import shutil
    import threading

    store = ModelStore(tmp_path / "store")
    record = store.import_folder("smol:onnx", _folder(tmp_path / "smol-int4"))
    errors: list[BaseException] = []

    def build() -> None:
        try:
            store.view(record)
        except BaseException as exc:  # reported below
            errors.append(exc)

    for _ in range(20):
        shutil.rmtree(record.model_path, ignore_errors=True)
        threads = [threading.Thread(target=build) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        for name, blob in record.files.items():
            assert os.path.samefile(record.model_path / name, blob)
    assert sorted(p.name for p in store.views.iterdir()) == [record.digest.removeprefix("sha256:")]


@pytest.mark.parametrize(
    ("names", "fim"),
    [
        (["<fim_prefix>", "<fim_suffix>", "<fim_middle>"], True),  # StarCoder / SmolLM
        (["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"], True),  # Qwen coder
        (["<fim_prefix>", "<fim_suffix>"], False),  # no middle: no FIM
        ([], False),
    ],
)
def test_fim_tokens_make_an_onnx_model_insert_capable(tmp_path: Path, names: list[str], fim: bool) -> None:
    from slmkit.answer.profile import INSERT, ModelProfile

    folder = _folder(tmp_path / "m")
    added = [{"id": 100 + i, "content": name, "special": True} for i, name in enumerate(names)]
    (folder / "tokenizer.json").write_text(json.dumps({"added_tokens": added}))
    record = ModelStore(tmp_path / "store").import_folder("coder:onnx", folder)
    info = read_folder_info(record.files, "int4")
    assert (info.metadata.get("tokenizer.ggml.fim_mid_token_id") == 102) is fim
    assert (INSERT in ModelProfile.of(record, info).capabilities) is fim


@pytest.mark.parametrize("outputs", [("logits", "hidden_states"), ("logits",)])
def test_a_graph_with_hidden_states_can_embed(tmp_path: Path, outputs: tuple[str, ...]) -> None:
    """The decoder graph's outputs are read without its weights: hidden states make an ONNX
    model embedding-capable; a graph that cannot be parsed (b"graph") has none."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from slmkit.answer.profile import EMBEDDING, ModelProfile

    folder = _folder(tmp_path / "m")
    x = helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, 1])
    ys = [helper.make_tensor_value_info(name, TensorProto.INT64, [1, 1]) for name in outputs]
    nodes = [helper.make_node("Identity", ["input_ids"], [name]) for name in outputs]
    onnx.save_model(helper.make_model(helper.make_graph(nodes, "g", [x], ys)), str(folder / "model.onnx"))
    record = ModelStore(tmp_path / "store").import_folder("emb:onnx", folder)
    info = read_folder_info(record.files, "int4")
    can = "hidden_states" in outputs
    assert (EMBEDDING in ModelProfile.of(record, info).capabilities) is can
    (folder / "model.onnx").write_bytes(b"graph")
    record = ModelStore(tmp_path / "store2").import_folder("emb:onnx", folder)
    assert EMBEDDING not in ModelProfile.of(record, read_folder_info(record.files, "int4")).capabilities
