"""Reranking: the ordering functions, and /rerank, /v1/rerank and /v2/rerank with a fake worker
(its stand-in cross-encoder scores a pair by the query words the document has); which models
are cross-encoders."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from slmkit.answer.profile import ModelProfile
from slmkit.server.rerank.protocol import order, rank_by_similarity, relevance
from slmkit.store import ModelStore
from tests.ggufs import write_tiny_gguf

DOCS = ["bread and butter", "fresh bread", "stones", "butter bread and jam"]


@pytest.fixture
def reranker(store: ModelStore, tmp_path: Path) -> str:
    store.import_gguf("rr:1", write_tiny_gguf(tmp_path / "rr.gguf", arch="bert", template=None, classifier=1))
    return "rr:1"


def test_similarity_orders_by_cosine_and_keeps_ties_in_order() -> None:
    query = [1.0, 0.0]
    docs = [[0.0, 1.0], [1.0, 0.1], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]
    ranked = order(rank_by_similarity(query, docs), None)
    assert [i for i, _ in ranked] == [2, 1, 0, 3, 4]
    assert ranked[0][1] == pytest.approx(1.0) and ranked[-1][1] == 0.0
    assert order([0.1, 0.5, 0.5], 2) == [(1, 0.5), (2, 0.5)]


def test_relevance_is_the_logistic_function_without_overflow() -> None:
    assert relevance(0.0) == 0.5
    assert relevance(2.0) == pytest.approx(1 / (1 + math.exp(-2)))
    assert relevance(-1000.0) == 0.0 and relevance(1000.0) == 1.0


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_rerank_answers_in_the_llama_cpp_and_jina_shape(client: TestClient, prefix: str) -> None:
    body = {"model": "tiny:1", "query": "bread", "documents": ["a", {"text": "bb"}, "ccc"], "top_n": 2}
    r = client.post(f"{prefix}/rerank", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["object"] == "list" and data["model"] == "tiny:1" and len(data["results"]) == 2
    assert {"index", "relevance_score", "document"} <= set(data["results"][0])
    scores = [x["relevance_score"] for x in data["results"]]
    assert scores == sorted(scores, reverse=True) and data["usage"]["total_tokens"] > 0
    texts = {x["index"]: x["document"]["text"] for x in data["results"]}
    assert all(texts[i] == ["a", "bb", "ccc"][i] for i in texts)
    bare = client.post(f"{prefix}/rerank", json={**body, "return_documents": False}).json()
    assert "document" not in bare["results"][0]


def test_a_cross_encoder_scores_each_pair_itself(client: TestClient, reranker: str) -> None:
    r = client.post("/v1/rerank", json={"model": reranker, "query": "bread and butter", "documents": DOCS})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    # overlap: 3, 1, 0, 3 words -> logits; reported as probabilities, best first, ties in order
    assert [x["index"] for x in results] == [0, 3, 1, 2]
    assert [x["relevance_score"] for x in results] == pytest.approx(
        [relevance(3), relevance(3), relevance(1), 0.5]
    )
    raw = client.post(
        "/rerank",
        json={"model": reranker, "query": "bread and butter", "documents": DOCS, "raw_scores": True},
    ).json()["results"]
    assert [x["relevance_score"] for x in raw] == [3.0, 3.0, 1.0, 0.0]


def test_tei_texts_get_tei_s_bare_list(client: TestClient, reranker: str) -> None:
    body = {"model": reranker, "query": "fresh bread", "texts": DOCS, "return_text": True, "top_n": 2}
    r = client.post("/rerank", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == [
        {"index": 1, "score": pytest.approx(relevance(2)), "text": "fresh bread"},
        {"index": 0, "score": pytest.approx(relevance(1)), "text": "bread and butter"},
    ]


def test_cohere_v2_shape(client: TestClient, reranker: str) -> None:
    body = {"model": reranker, "query": "jam", "documents": DOCS, "top_n": 1, "max_tokens_per_doc": 4096}
    r = client.post("/v2/rerank", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["results"] == [{"index": 3, "relevance_score": pytest.approx(relevance(1))}]
    assert data["id"] and data["meta"]["api_version"]["version"] == "2"
    assert client.post("/v2/rerank", json={"query": "jam", "documents": DOCS}).status_code == 400  # model


def test_which_models_are_cross_encoders(tmp_path: Path) -> None:
    from slmkit.store.gguf_info import read_info

    one = read_info(write_tiny_gguf(tmp_path / "a.gguf", arch="bert", template=None, classifier=1))
    two = read_info(write_tiny_gguf(tmp_path / "b.gguf", arch="bert", template=None, classifier=3))
    plain = read_info(write_tiny_gguf(tmp_path / "c.gguf", arch="bert", template=None))
    assert one.classifier_outputs == 1 and one.reranker
    assert two.classifier_outputs == 3 and not two.reranker  # a classifier (NLI), not a reranker
    assert not plain.reranker and not read_info(write_tiny_gguf(tmp_path / "d.gguf")).reranker


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "", "documents": ["a"]}, "query"),
        ({"query": "q", "documents": []}, "documents"),
        ({"query": "q", "documents": ["a", ""]}, "documents"),
        ({"query": "q"}, "documents"),
        ({"query": "q", "documents": ["a"], "texts": ["a"]}, "documents"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
        ({"query": "q", "documents": ["a"], "max_tokens_per_doc": 0}, "max_tokens_per_doc"),
        ({"query": "q", "documents": ["a"], "rank_fields": ["x"]}, "rank_fields"),
        ({"query": "q", "documents": ["a"], "truncate": True}, "truncate"),
        ({"query": "q", "documents": ["x"] * 300}, "SLM_MAX_EMBED_INPUTS"),
    ],
)
def test_bad_rerank_requests_name_the_field(client: TestClient, body: dict[str, object], field: str) -> None:
    r = client.post("/v1/rerank", json={"model": "tiny:1", **body})
    assert r.status_code == 400 and field in r.json()["error"]["message"]


def test_an_encoder_model_only_embeds(tmp_path: Path) -> None:
    from slmkit.config import Config
    from slmkit.errors import InvalidRequest
    from slmkit.pipe import EngineRequest, SamplingParams
    from slmkit.store.gguf_info import read_info

    store = ModelStore(tmp_path / "models")
    path = write_tiny_gguf(tmp_path / "bert.gguf", arch="bert", template=None)
    record = store.import_gguf("enc:1", path)
    info = read_info(record.model_path)
    assert info.encoder_only
    profile = ModelProfile.of(record, info)
    assert profile.capabilities == frozenset({"embedding"})
    request = EngineRequest("r", SamplingParams(), messages=({"role": "user", "content": "hi"},))
    with pytest.raises(InvalidRequest, match="embedding model"):
        profile.resolve(request, Config.from_env({}))
    llama = ModelProfile.of(store.import_gguf("dec:1", write_tiny_gguf(tmp_path / "d.gguf")), None)
    assert "completion" in llama.capabilities


def test_model_cards_say_what_each_model_can_do(
    client: TestClient, store: ModelStore, tmp_path: Path, reranker: str
) -> None:
    store.import_gguf("enc:1", write_tiny_gguf(tmp_path / "bert.gguf", arch="bert", template=None))
    cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert cards["enc:1"]["capabilities"] == ["embedding"]
    assert cards[reranker]["capabilities"] == ["rerank"]
    assert "completion" in cards["tiny:1"]["capabilities"]
    assert client.post("/api/show", json={"model": reranker}).json()["capabilities"] == ["rerank"]
    chat = client.post(
        "/v1/chat/completions", json={"model": reranker, "messages": [{"role": "user", "content": "x"}]}
    )
    assert chat.status_code == 400
    embed = client.post("/v1/embeddings", json={"model": reranker, "input": "x"})
    assert embed.status_code == 400 and "rerank" in embed.json()["error"]["message"]
