"""HF -> GGUF conversion and quantization with real numbers: the shipped SmolLM2 GGUF goes to a
Hugging Face folder through transformers' GGUF loading, back through `slm convert`, and its
logits must match transformers'; then `slm quantize` to Q8_0, Q4_K_M and Q2_K, whose quality
must order as bits do. Each architecture's tiny random model: tests/integration/test_architectures.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from slmkit.engine.backends.llama_offline import Scorer
from tests.hf_export import export_hf

pytest.importorskip("transformers")
pytestmark = pytest.mark.integration
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "def fibonacci(n):\n    return",
]
LOGIT_TOLERANCE = 0.1  # max |logit difference| F16 GGUF in llama.cpp vs float32 transformers


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "SLM_MODELS": str(root / "store")}

    def slm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "slmkit", *args], env=self.env, capture_output=True, text=True, timeout=600
        )
        if check and done.returncode != 0:
            raise AssertionError(f"slm {' '.join(args)}: {done.stderr[-2000:]}")
        return done


@pytest.fixture(scope="module")
def roundtrip(
    tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path
) -> Iterator[tuple[Workspace, Any]]:
    root = tmp_path_factory.mktemp("convert")
    model = export_hf(smollm2_gguf, root / "hf")
    work = Workspace(root)
    work.slm(
        "convert",
        str(root / "hf"),
        "--outtype",
        "f16",
        "--out",
        str(root / "smol-f16.gguf"),
        "--name",
        "smol:f16",
    )
    yield work, model


def test_converted_f16_matches_transformers_logits_and_tokens(roundtrip: tuple[Workspace, Any]) -> None:
    import torch
    from transformers import AutoTokenizer

    work, model = roundtrip
    tokenizer = AutoTokenizer.from_pretrained(str(work.root / "hf"))
    with Scorer(work.root / "smol-f16.gguf") as ours:
        for prompt in PROMPTS:
            ids = tokenizer(prompt)["input_ids"]
            assert ours.tokenize(prompt) == ids
            with torch.no_grad():
                reference = model(torch.tensor([ids])).logits[0].numpy()
            got = ours.logits(ids)
            assert np.abs(reference - got).max() <= LOGIT_TOLERANCE
            assert (reference.argmax(-1) == got.argmax(-1)).all()


def test_quantize_sweep_orders_quality_by_bits_and_every_result_generates(
    roundtrip: tuple[Workspace, Any],
) -> None:
    work, _ = roundtrip
    out = work.root / "sweep"
    done = work.slm("quantize", "smol:f16", "--to", "Q8_0,Q4_K_M,Q2_K", "--out", str(out), "--json")
    results = {r["type"]: r for r in json.loads(done.stdout)}
    assert [results[t]["status"] for t in ("Q8_0", "Q4_K_M", "Q2_K")] == ["stored"] * 3
    ppl = {t: results[t]["perplexity"] for t in ("Q8_0", "Q4_K_M", "Q2_K")}
    assert ppl["Q8_0"]["ppl_ratio"] < ppl["Q2_K"]["ppl_ratio"]
    assert ppl["Q8_0"]["kld"] < ppl["Q4_K_M"]["kld"] < ppl["Q2_K"]["kld"]
    assert ppl["Q8_0"]["top1_agreement"] > ppl["Q2_K"]["top1_agreement"]
    assert results["Q8_0"]["size"] > results["Q4_K_M"]["size"] > results["Q2_K"]["size"]
    assert results["Q4_K_M"]["provenance"]["source_type"] == "F16"
    assert (out / "quantize-sweep.png").stat().st_size > 10_000 and (out / "quantize.json").is_file()

    from slmkit.config import Config
    from slmkit.local import LocalModel
    from slmkit.store import ModelStore

    store = ModelStore(work.root / "store")
    for quant in ("q8_0", "q4_k_m", "q2_k"):
        with LocalModel.open(f"smol:f16-{quant}", config=Config.from_env(work.env), store=store) as m:
            answer = m.chat([{"role": "user", "content": "Name a colour."}], temperature=0, max_tokens=12)
            assert answer.completion_tokens > 0 and answer.text.strip()
        assert store.get(f"smol:f16-{quant}").config.provenance["quantized_from"]


def test_quality_gate_refuses_and_stores_nothing(roundtrip: tuple[Workspace, Any]) -> None:
    work, _ = roundtrip
    done = work.slm(
        "quantize",
        "smol:f16",
        "--to",
        "Q2_K",
        "--name",
        "smol:gated",
        "--max-ppl-increase",
        "1%",
        check=False,
    )
    assert done.returncode == 1 and "beyond the budget" in done.stderr
    listed = work.slm("eval", "smol:gated", check=False)
    assert listed.returncode == 1 and "not found" in listed.stderr.lower()
    assert not list((work.root / "store").glob(".quantize-*"))


def test_imatrix_is_applied(roundtrip: tuple[Workspace, Any]) -> None:
    import gguf

    work, _ = roundtrip
    reader = gguf.GGUFReader(work.root / "smol-f16.gguf")
    path = work.root / "imatrix.gguf"
    writer = gguf.GGUFWriter(str(path), "imatrix")
    rng = np.random.default_rng(0)
    for t in reader.tensors:
        if len(t.shape) == 2 and t.name != "token_embd.weight":
            width = int(t.shape[0])
            writer.add_tensor(f"{t.name}.in_sum2", rng.uniform(0.1, 10, size=(1, width)).astype(np.float32))
            writer.add_tensor(f"{t.name}.counts", np.array([[1.0]], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    plain = work.slm("quantize", "smol:f16", "--to", "Q4_0", "--name", "smol:plain", "--no-eval", "--json")
    weighted = work.slm(
        "quantize",
        "smol:f16",
        "--to",
        "Q4_0",
        "--name",
        "smol:imat",
        "--imatrix",
        str(path),
        "--no-eval",
        "--json",
    )
    a, b = json.loads(plain.stdout)[0], json.loads(weighted.stdout)[0]
    assert b["provenance"]["imatrix"].startswith("sha256:") and not a["provenance"]["imatrix"]
    from slmkit.store import ModelStore

    store = ModelStore(work.root / "store")
    assert (
        store.get("smol:plain").manifest.model_layer.digest
        != store.get("smol:imat").manifest.model_layer.digest
    )


def test_eval_suite_gate_and_multiple_choice(roundtrip: tuple[Workspace, Any]) -> None:
    work, _ = roundtrip
    done = work.slm("eval", "smol:f16", "--suite", "builtin", "--mc", "--json", "--chunks", "1")
    result = json.loads(done.stdout)
    assert result["golden"]["total"] == 4 and result["multiple_choice"]["questions"] >= 20
    assert result["multiple_choice"]["accuracy"] > 0.25  # better than chance on easy questions
    failing = work.root / "failing.yaml"
    failing.write_text("tests:\n  - {prompt: 'Say hello.', contains: 'xyzzy-never'}\n")
    gated = work.slm(
        "eval", "smol:f16", "--suite", str(failing), "--min-pass", "0.9", "--chunks", "1", check=False
    )
    assert gated.returncode == 1 and "FAIL" in gated.stdout
    vs = work.slm(
        "eval", str(work.root / "smol-f16.gguf"), "--reference", "smol:f16", "--chunks", "1", "--json"
    )
    same = json.loads(vs.stdout)["perplexity"]
    assert same["kld"] == pytest.approx(0, abs=1e-6) and same["top1_agreement"] == 1.0
