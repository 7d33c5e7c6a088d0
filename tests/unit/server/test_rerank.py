"""Reranking: the ordering function, and /rerank and /v1/rerank with a fake worker; the
embedding-only capability of encoder models."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from slmkit.answer.profile import ModelProfile
from slmkit.server.rerank.serving import rank
from slmkit.store import ModelStore
from tests.ggufs import write_tiny_gguf


def test_rank_orders_by_cosine_and_keeps_ties_in_order() -> None:
    query = [1.0, 0.0]
    docs = [[0.0, 1.0], [1.0, 0.1], [2.0, 0.0], [0.0, 2.0], [0.0, 0.0]]
    ranked = rank(query, docs)
    assert [i for i, _ in ranked] == [2, 1, 0, 3, 4]
    assert ranked[0][1] == pytest.approx(1.0) and ranked[-1][1] == 0.0


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_rerank_answers_in_the_llama_cpp_and_vllm_shape(client: TestClient, prefix: str) -> None:
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


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": "", "documents": ["a"]}, "query"),
        ({"query": "q", "documents": []}, "documents"),
        ({"query": "q", "documents": ["a", ""]}, "documents"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
        ({"query": "q", "documents": ["a"], "rank_fields": ["x"]}, "rank_fields"),
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
    client: TestClient, store: ModelStore, tmp_path: Path
) -> None:
    store.import_gguf("enc:1", write_tiny_gguf(tmp_path / "bert.gguf", arch="bert", template=None))
    cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert cards["enc:1"]["capabilities"] == ["embedding"]
    assert "completion" in cards["tiny:1"]["capabilities"]
