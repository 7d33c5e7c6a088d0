"""slm convert's frame around llama.cpp's converters (optimize/llamacpp.py, optimize/converter.py),
with a fake llama.cpp tree whose scripts succeed, fail or write junk as told: the checks that
name what is wrong, the child's reason as the error, the all-or-nothing write, the stated
pre-tokenizer, and the supported list read from the converter's own tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmkit.errors import ConversionFailed, InvalidRequest
from slmkit.optimize import llamacpp

TABLES = """
TEXT_MODEL_MAP: dict[str, str] = {
    "LlamaForCausalLM": "llama",
    "Phi3ForCausalLM": "phi",
}
MMPROJ_MODEL_MAP: dict[str, str] = {"Idefics3ForConditionalGeneration": "smolvlm"}
"""

# The fake converter: writes what MODE says to --outfile. It asks conversion.base for the
# pre-tokenizer, as the real one does for a BPE vocabulary.
SCRIPT = """
import sys
from pathlib import Path
from conversion import base

args = sys.argv[1:]
out = Path(args[args.index("--outfile") + 1])
mode = (Path(args[0]) / "MODE").read_text().strip()
print("INFO:hf-to-gguf:Loading model", flush=True)
if mode == "fail":
    print("ERROR:hf-to-gguf:Model Foo is not supported", flush=True)
    out.write_bytes(b"GGUF half")
    raise SystemExit(1)
if mode == "raise":
    out.write_bytes(b"GGUF half")
    raise ValueError("tensor blk.0.attn_q.weight has a shape I cannot map")
if mode == "junk":
    out.write_bytes(b"not a gguf")
    raise SystemExit(0)
pre = base.TextModel().get_vocab_base_pre(None)
out.write_bytes(b"GGUF" + pre.encode())
"""

BASE = """
import logging
logger = logging.getLogger("hf-to-gguf")

class TextModel:
    def get_vocab_base_pre(self, tokenizer):
        raise NotImplementedError("BPE pre-tokenizer was not recognized - update get_vocab_base_pre()")
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "llama.cpp"
    (root / "conversion").mkdir(parents=True)
    (root / "conversion" / "__init__.py").write_text(TABLES)
    (root / "conversion" / "base.py").write_text(BASE)
    (root / "convert_hf_to_gguf.py").write_text(SCRIPT)
    (root / "convert_lora_to_gguf.py").write_text(SCRIPT)
    return root


def model_folder(path: Path, arch: str = "LlamaForCausalLM", mode: str = "ok") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"architectures": [arch]}))
    (path / "model.safetensors").write_bytes(b"x")
    (path / "tokenizer.json").write_text("{}")
    (path / "MODE").write_text(mode)
    return path


def test_supported_is_read_from_the_converters_own_tables(tree: Path) -> None:
    table = llamacpp.supported(tree)
    assert dict(table.text) == {"LlamaForCausalLM": "llama", "Phi3ForCausalLM": "phi"}
    assert list(table.mmproj) == ["Idefics3ForConditionalGeneration"]
    block = llamacpp.markdown_block(table)
    assert block.startswith(llamacpp.BEGIN) and block.rstrip().endswith(llamacpp.END)
    assert "**2 model classes**" in block and "`Phi3ForCausalLM`" in block
    (tree / "conversion" / "__init__.py").write_text("X = 1\n")
    llamacpp.supported.cache_clear()
    with pytest.raises(ConversionFailed, match="TEXT_MODEL_MAP"):
        llamacpp.supported(tree)


def test_a_configured_tree_must_hold_the_converter(tree: Path, tmp_path: Path) -> None:
    assert llamacpp.source(str(tree), tmp_path / "cache") == tree
    with pytest.raises(InvalidRequest, match="SLM_LLAMA_CPP"):
        llamacpp.source(str(tmp_path), tmp_path / "cache")


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda f: (f / "config.json").unlink(), "no config.json"),
        (lambda f: (f / "config.json").write_text("{"), "config.json: not JSON"),
        (lambda f: (f / "config.json").write_text("{}"), "no 'architectures'"),
        (
            lambda f: (f / "config.json").write_text('{"architectures": ["GPTFooForCausalLM"]}'),
            "'GPTFooForCausalLM'",
        ),
        (lambda f: (f / "model.safetensors").unlink(), "no weights"),
        (
            lambda f: (f / "model.safetensors").rename(f / "pytorch_model.bin"),
            "pytorch_model.bin: pickle weights",
        ),
        (
            lambda f: (f / "tokenization_evil.py").write_text("import os"),
            "tokenization_evil.py: a folder with Python",
        ),
        (
            lambda f: (f / "tokenizer_config.json").write_text('{"auto_map": {"AutoTokenizer": "x--y.Z"}}'),
            "auto_map",
        ),
        (lambda f: (f / "tokenizer.json").unlink(), "no tokenizer"),
    ],
)
def test_folder_checks_name_what_is_wrong(tree: Path, tmp_path: Path, spoil: object, message: str) -> None:
    folder = model_folder(tmp_path / "model")
    spoil(folder)  # type: ignore[operator]
    with pytest.raises(InvalidRequest, match=message):
        llamacpp.convert(folder, tmp_path / "out.gguf", "f16", root=tree)
    assert not (tmp_path / "out.gguf").exists()


def test_unsupported_architecture_points_at_the_list(tree: Path, tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model", arch="GPTFooForCausalLM")
    with pytest.raises(InvalidRequest, match=r"slm convert --list. shows the 2 it does"):
        llamacpp.convert(folder, tmp_path / "out.gguf", "f16", root=tree)
    with pytest.raises(InvalidRequest, match="multimodal projector"):
        llamacpp.convert(model_folder(tmp_path / "m2"), tmp_path / "out.gguf", "f16", root=tree, mmproj=True)


def test_arguments_are_checked(tree: Path, tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    with pytest.raises(InvalidRequest, match="--outtype"):
        llamacpp.convert(folder, tmp_path / "o.gguf", "q4_k_m", root=tree)
    with pytest.raises(InvalidRequest, match="--pre-tokenizer"):
        llamacpp.convert(folder, tmp_path / "o.gguf", "f16", root=tree, pre_tokenizer="nonsense")


def test_success_is_renamed_into_place_and_the_stated_pre_tokenizer_is_used(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    folder = model_folder(tmp_path / "model")
    out = llamacpp.convert(
        folder, tmp_path / "o" / "out.gguf", "f16", root=tree, pre_tokenizer="gpt-2", progress=sys.stderr
    )
    assert out.read_bytes() == b"GGUFgpt-2"
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.gguf"]
    assert "Loading model" in capsys.readouterr().err  # the converter's own progress, shown


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("fail", "Model Foo is not supported"),
        ("raise", "ValueError: tensor blk.0.attn_q.weight has a shape I cannot map"),
        ("junk", "wrote no GGUF"),
        ("ok", "pre-tokenizer was not recognized.*--pre-tokenizer"),  # none stated
    ],
)
def test_failures_give_the_converters_reason_and_leave_nothing(
    tree: Path, tmp_path: Path, mode: str, reason: str
) -> None:
    folder = model_folder(tmp_path / "model", mode=mode)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "keep.gguf").write_bytes(b"GGUF old")  # an earlier file of that name stays
    with pytest.raises(ConversionFailed, match=reason):
        llamacpp.convert(folder, out_dir / "keep.gguf", "f16", root=tree)
    assert sorted(p.name for p in out_dir.iterdir()) == ["keep.gguf"]
    assert (out_dir / "keep.gguf").read_bytes() == b"GGUF old"


def test_lora_folders_are_checked(tree: Path, tmp_path: Path) -> None:
    base = model_folder(tmp_path / "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    with pytest.raises(InvalidRequest, match=r"no adapter_config\.json"):
        llamacpp.convert_lora(adapter, base, tmp_path / "l.gguf", "f16", root=tree)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(InvalidRequest, match="not LORA"):
        llamacpp.convert_lora(adapter, base, tmp_path / "l.gguf", "f16", root=tree)
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(InvalidRequest, match=r"no weights \(adapter_model\.safetensors\)"):
        llamacpp.convert_lora(adapter, base, tmp_path / "l.gguf", "f16", root=tree)
    (adapter / "adapter_model.bin").write_bytes(b"x")
    with pytest.raises(InvalidRequest, match="pickle weights"):
        llamacpp.convert_lora(adapter, base, tmp_path / "l.gguf", "f16", root=tree)
    (adapter / "adapter_model.safetensors").write_bytes(b"x")
    with pytest.raises(InvalidRequest, match="--base"):
        llamacpp.convert_lora(adapter, tmp_path / "nowhere", tmp_path / "l.gguf", "f16", root=tree)
    (adapter / "MODE").write_text("ok")
    (base / "config.json").write_text(json.dumps({"architectures": ["GPTFooForCausalLM"]}))
    with pytest.raises(InvalidRequest, match="--base: architecture 'GPTFooForCausalLM'"):
        llamacpp.convert_lora(adapter, base, tmp_path / "l.gguf", "f16", root=tree)


def test_reason_prefers_the_exception_then_the_error_log() -> None:
    lines = [
        "INFO:x:a",
        "ERROR:hf-to-gguf:bad vocab",
        "Traceback (most recent call last):",
        "  File x",
        "KeyError: 'q'",
    ]
    assert llamacpp._reason(lines) == "KeyError: 'q'"
    assert llamacpp._reason(lines[:2]) == "bad vocab"
    assert llamacpp._reason(["something odd"]) == "something odd"
