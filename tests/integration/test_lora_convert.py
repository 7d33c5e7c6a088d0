"""A PEFT LoRA adapter converted by llama.cpp's LoRA converter (`slm convert ADAPTER --base
BASE`), applied with a Modelfile's ADAPTER, changes the served model's next-token
distribution and greedy tokens as transformers does with the adapter merged."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import Server
from tests.tiny_models import PRE_TOKENIZER, build, load

pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytestmark = pytest.mark.integration

IDS = list(range(40, 70))
STEPS = 8
TOLERANCE = 0.05  # |log-probability difference| of the top tokens (f32 weights, f32 adapter)


def lora(base: Path, out: Path) -> Any:
    """A random rank-4 LoRA on the attention and MLP projections, saved as PEFT does; returns
    transformers' model with it merged."""
    import torch

    torch.manual_seed(1)
    config = peft.LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], lora_dropout=0.0
    )
    with warnings.catch_warnings():  # peft calls a transformers API deprecated for v6
        warnings.simplefilter("ignore", FutureWarning)
        model = peft.get_peft_model(load(base), config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.normal_(0, 0.2)
    model.save_pretrained(str(out))
    return model.merge_and_unload().eval()


def served(server: Server, model: str) -> dict[str, Any]:
    r = httpx.post(
        f"{server.url}/v1/completions",
        json={
            "model": model,
            "prompt": IDS,
            "max_tokens": STEPS,
            "temperature": 0,
            "ignore_eos": True,
            "logprobs": 5,
        },
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["choices"][0])


def test_peft_lora_converts_and_applies_as_merged(server: Server, tmp_path: Path) -> None:
    import torch

    base = build("llama")
    merged = lora(base, tmp_path / "adapter")
    server.cli(
        "convert", str(base), "--pre-tokenizer", PRE_TOKENIZER, "--outtype", "f32", "--name", "lora-base:f32",
        "--out", str(tmp_path / "base.gguf"),
    )  # fmt: skip
    done = server.cli(
        "convert", str(tmp_path / "adapter"), "--base", str(base), "--outtype", "f32",
        "--out", str(tmp_path / "lora.gguf"),
    )  # fmt: skip
    assert "lora" in done.stdout
    (tmp_path / "Modelfile").write_text("FROM lora-base:f32\nADAPTER ./lora.gguf\n")
    server.cli("create", "lora-tuned:1", "-f", str(tmp_path / "Modelfile"))

    with torch.no_grad():
        reference = torch.log_softmax(merged(torch.tensor([IDS])).logits[0, -1], -1)
        greedy = merged.generate(
            torch.tensor([IDS]), attention_mask=torch.ones(1, len(IDS), dtype=torch.long),
            max_new_tokens=STEPS, min_new_tokens=STEPS, do_sample=False,
        )[0].tolist()[len(IDS):]  # fmt: skip
    tuned, plain = served(server, "lora-tuned:1"), served(server, "lora-base:f32")
    detok = httpx.post(
        f"{server.url}/detokenize", json={"model": "lora-tuned:1", "tokens": greedy}, timeout=60
    )
    assert tuned["text"] == detok.json()["prompt"]  # the merged model's greedy tokens
    assert tuned["text"] != plain["text"]  # and the adapter changed them
    first = tuned["logprobs"]["top_logprobs"][0]  # token text -> log-probability at the first step
    compared = 0
    for text, logprob in first.items():
        ids = httpx.post(
            f"{server.url}/tokenize",
            json={"model": "lora-tuned:1", "prompt": text, "add_special_tokens": False},
        ).json()["tokens"]
        if len(ids) == 1:  # a token whose text maps back to it alone
            assert math.isclose(logprob, float(reference[ids[0]]), abs_tol=TOLERANCE), (text, logprob)
            compared += 1
    assert compared >= 3, first
