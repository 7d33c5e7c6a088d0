"""Cross-encoder rerank end to end: a tiny random RoBERTa cross-encoder (as bge-reranker;
tests/tiny_models.py) converted by llama.cpp's converter, served, and asked through the three
request shapes (Jina/llama.cpp's server, TEI, Cohere v2, the last with the official `cohere`
client): its scores are transformers' within 0.1 and in the same order."""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.integration.conftest import Server
from tests.tiny_models import PRE_TOKENIZER, build, load

pytest.importorskip("transformers")
pytestmark = pytest.mark.integration

QUERY = "what is the capital of france"
DOCUMENTS = [
    "Paris is the capital of France.",
    "the quick brown fox jumps over the lazy dog",
    "def return import class for while",
    "music and rivers 12 34",
    "The capital of Italy is Rome.",
]
TOLERANCE = 0.1  # |score difference| vs transformers (seen: 0.003 on logits)


@pytest.fixture(scope="module")
def reranker(server: Server, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, np.ndarray]:
    """The served reranker's name and transformers' logits for (QUERY, each document)."""
    import torch
    from transformers import AutoTokenizer

    folder = build("roberta-reranker")
    out = tmp_path_factory.mktemp("reranker") / "rr.gguf"
    server.cli(
        "convert", str(folder), "--pre-tokenizer", PRE_TOKENIZER, "--out", str(out), "--name", "tiny-rr:f16"
    )
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    batch = tokenizer([QUERY] * len(DOCUMENTS), DOCUMENTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = load(folder)(**batch).logits[:, 0].numpy()
    return "tiny-rr:f16", logits


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def test_cross_encoder_scores_match_transformers_in_every_shape(
    server: Server, reranker: tuple[str, np.ndarray]
) -> None:
    name, logits = reranker
    expected_order = [int(i) for i in np.argsort(-logits, kind="stable")]
    card = httpx.post(f"{server.url}/api/show", json={"model": name}, timeout=30).json()
    assert card["capabilities"] == ["rerank"]
    for path in ("/v1/rerank", "/rerank"):
        r = httpx.post(
            f"{server.url}{path}", json={"model": name, "query": QUERY, "documents": DOCUMENTS}, timeout=120
        )
        assert r.status_code == 200, r.text
        results = r.json()["results"]
        assert [x["index"] for x in results] == expected_order
        got = np.array([x["relevance_score"] for x in sorted(results, key=lambda x: x["index"])])
        assert np.abs(got - sigmoid(logits)).max() <= TOLERANCE
        assert results[0]["document"]["text"] == DOCUMENTS[expected_order[0]]
    raw = httpx.post(
        f"{server.url}/rerank",
        json={"model": name, "query": QUERY, "texts": DOCUMENTS, "raw_scores": True, "top_n": 3},
        timeout=120,
    ).json()
    assert [x["index"] for x in raw] == expected_order[:3]
    assert max(abs(x["score"] - logits[x["index"]]) for x in raw) <= TOLERANCE
    print(
        f"rerank parity: max |logit difference| {max(abs(x['score'] - logits[x['index']]) for x in raw):.4f}"
    )


def test_the_official_cohere_client(server: Server, reranker: tuple[str, np.ndarray]) -> None:
    cohere = pytest.importorskip("cohere")
    name, logits = reranker
    with httpx.Client(timeout=120) as transport:
        client = cohere.ClientV2(api_key="unused", base_url=server.url, httpx_client=transport)
        answer = client.rerank(model=name, query=QUERY, documents=DOCUMENTS, top_n=2)
    order = [int(i) for i in np.argsort(-logits, kind="stable")]
    assert [r.index for r in answer.results] == order[:2]
    for r in answer.results:
        assert math.isclose(r.relevance_score, float(sigmoid(logits[r.index])), abs_tol=TOLERANCE)


def test_reranker_bounds_and_refusals(server: Server, reranker: tuple[str, np.ndarray]) -> None:
    name, _ = reranker
    # a pair longer than the model's trained context (128 tokens) is refused, naming the limit
    long = " ".join(["bread"] * 400)
    r = httpx.post(
        f"{server.url}/v1/rerank", json={"model": name, "query": QUERY, "documents": [long]}, timeout=60
    )
    assert r.status_code == 400 and "tokens" in r.json()["error"]["message"]
    # Cohere's max_tokens_per_doc cuts each document instead
    cut = httpx.post(
        f"{server.url}/v2/rerank",
        json={"model": name, "query": QUERY, "documents": [long], "max_tokens_per_doc": 32},
        timeout=60,
    )
    assert cut.status_code == 200, cut.text
    # a cross-encoder does not embed or chat
    embed = httpx.post(f"{server.url}/v1/embeddings", json={"model": name, "input": "x"}, timeout=30)
    assert embed.status_code == 400 and "rerank" in embed.json()["error"]["message"]
    # and the worker survived all of it
    ok = httpx.post(
        f"{server.url}/v1/rerank",
        json={"model": name, "query": QUERY, "documents": DOCUMENTS[:2]},
        timeout=60,
    )
    assert ok.status_code == 200


def test_embedding_models_keep_the_similarity_ranking(server: Server, embedder: str) -> None:
    docs = ["Paris is the capital of France.", "Bananas are yellow fruit.", "France's capital city is Paris."]
    deadline = time.monotonic() + 120
    r = httpx.post(
        f"{server.url}/v1/rerank", json={"model": embedder, "query": "capital of France", "documents": docs},
        timeout=max(1.0, deadline - time.monotonic()),
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert {x["index"] for x in r.json()["results"][:2]} == {0, 2}


def test_the_reranker_is_found_by_path(tmp_path: Path) -> None:
    """The converter's GGUF says no pooling; slmkit knows it for a cross-encoder by its
    one-output classification head (llama.cpp's server needs --reranking for it)."""
    from slmkit.store.gguf_info import read_info

    out = tmp_path / "rr.gguf"
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "slmkit", "convert", str(build("roberta-reranker")), "--pre-tokenizer",
         PRE_TOKENIZER, "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-1500:]
    info = read_info(out)
    assert info.pooling_type is None and info.classifier_outputs == 1 and info.reranker
