from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from slmkit.names import ModelName
from slmkit.store import ModelStore
from slmkit.store.gguf_info import read_info
from tests.unit.server.fakes import FakeWorkers

CHAT = {"model": "tiny:1", "messages": [{"role": "user", "content": "hi"}]}


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_chat_streams_ndjson_by_default(client: TestClient) -> None:
    r = client.post("/api/chat", json=CHAT)
    assert r.headers["content-type"] == "application/x-ndjson"
    chunks = lines(r.text)
    assert "".join(c["message"]["content"] for c in chunks) == "Hello world"  # type: ignore[index]
    last = chunks[-1]
    assert last["done"] is True and last["done_reason"] == "stop"
    for key in (
        "total_duration",
        "load_duration",
        "prompt_eval_count",
        "prompt_eval_duration",
        "eval_count",
        "eval_duration",
    ):
        assert isinstance(last[key], int), key
    assert last["eval_count"] == 12


def test_generate_not_streamed(client: TestClient) -> None:
    r = client.post(
        "/api/generate",
        json={"model": "tiny:1", "prompt": "x", "stream": False, "options": {"num_predict": 4}},
    )
    body = r.json()
    assert body["response"] == "Hell" and body["done_reason"] == "length"


def test_generate_system_and_raw(client: TestClient, workers: FakeWorkers) -> None:
    r = client.post("/api/generate", json={"model": "tiny:1", "prompt": "x", "system": "S", "stream": False})
    assert r.status_code == 200
    worker = workers.instances[-1]
    prompt = worker.backend.tokenized[-1]
    assert "<|system|>S" in prompt and "<|user|>x" in prompt
    client.post("/api/generate", json={"model": "tiny:1", "prompt": "raw!", "raw": True, "stream": False})
    assert worker.backend.tokenized[-1] == "raw!"


def test_empty_prompt_loads_and_keep_alive_zero_unloads(client: TestClient) -> None:
    r = client.post("/api/generate", json={"model": "tiny:1"})
    assert r.json()["done_reason"] == "load"
    assert [m["name"] for m in client.get("/api/ps").json()["models"]] == ["tiny:1"]
    r = client.post("/api/generate", json={"model": "tiny:1", "keep_alive": 0})
    assert r.json()["done_reason"] == "unload"
    assert client.get("/api/ps").json()["models"] == []


def test_keep_alive_zero_after_request_unloads(client: TestClient) -> None:
    client.post("/api/chat", json={**CHAT, "stream": False, "keep_alive": "0s"})
    assert client.get("/api/ps").json()["models"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**CHAT, "options": {"num_ctx": 8}}, "num_ctx"),
        ({**CHAT, "options": {"mirostat": 2}}, "mirostat"),
        ({**CHAT, "options": {"wat": 1}}, "wat"),
        ({**CHAT, "options": {"temperature": "hot"}}, "temperature"),
        ({**CHAT, "options": {"num_predict": 0}}, "num_predict"),
        ({**CHAT, "format": 42}, "format"),
        ({**CHAT, "format": {"type": "number", "minimum": 1}}, "format"),
        ({**CHAT, "tools": [{"type": "function"}]}, "tools"),
        ({**CHAT, "keep_alive": "soon"}, "keep_alive"),
        (
            {"model": "tiny:1", "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]},
            "images",
        ),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    client: TestClient, body: dict[str, object], field: str
) -> None:
    r = client.post("/api/chat", json=body)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]


def test_ignored_runner_options(client: TestClient) -> None:
    r = client.post(
        "/api/chat", json={**CHAT, "stream": False, "options": {"num_thread": 2, "use_mmap": True}}
    )
    assert r.status_code == 200


def test_tags_show_ps_version(client: TestClient, store: ModelStore) -> None:
    tags = client.get("/api/tags").json()["models"]
    assert tags[0]["name"] == "tiny:1"
    assert tags[0]["size"] == store.get("tiny:1").size
    assert len(tags[0]["digest"]) == 64
    assert tags[0]["details"]["family"] == "llama"
    show = client.post("/api/show", json={"model": "tiny:1"}).json()
    assert show["modelfile"].count("FROM tiny:1") == 2 or "FROM tiny:1" in show["modelfile"]
    assert show["template"].startswith("{% for m in messages %}")
    assert show["model_info"]["general.architecture"] == "llama"
    assert client.post("/api/show", json={"name": "tiny:1"}).status_code == 200
    assert client.get("/api/version").json()["version"]
    assert "provenance" not in show
    record = store.get("tiny:1")
    made = {"quantized_from": record.manifest.model_layer.digest, "type": "Q4_K_M"}
    digest = record.manifest.model_layer.digest
    store.create(ModelName.parse("tiny:q"), digest, read_info(record.model_path), provenance=made)
    assert client.post("/api/show", json={"model": "tiny:q"}).json()["provenance"] == made


def test_copy_and_delete(client: TestClient) -> None:
    assert client.post("/api/copy", json={"source": "tiny:1", "destination": "copy:2"}).status_code == 200
    assert {m["name"] for m in client.get("/api/tags").json()["models"]} == {"tiny:1", "copy:2"}
    assert client.request("DELETE", "/api/delete", json={"model": "copy:2"}).status_code == 200
    r = client.request("DELETE", "/api/delete", json={"model": "copy:2"})
    assert r.status_code == 404 and "not found" in r.json()["error"]
    r = client.post("/api/copy", json={"source": "nope", "destination": "x"})
    assert r.status_code == 404


def test_embed(client: TestClient) -> None:
    body = client.post("/api/embed", json={"model": "tiny:1", "input": ["a", "b"]}).json()
    assert len(body["embeddings"]) == 2 and body["prompt_eval_count"] == 2
    legacy = client.post("/api/embeddings", json={"model": "tiny:1", "prompt": "a"}).json()
    assert legacy["embedding"] == body["embeddings"][0]


def test_unknown_model(client: TestClient) -> None:
    r = client.post("/api/chat", json={**CHAT, "model": "nope"})
    assert r.status_code == 404
    assert r.json() == {"error": "model 'nope:latest' not found, try pulling it first"}


def test_format_reaches_the_engine_as_a_checked_schema(client: TestClient) -> None:
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    assert client.post("/api/chat", json={**CHAT, "stream": False, "format": schema}).status_code == 200
    assert (
        client.post(
            "/api/generate", json={"model": "tiny:1", "prompt": "x", "stream": False, "format": "json"}
        ).status_code
        == 200
    )
    (loaded,) = client.app.state.slm.manager.loaded()  # type: ignore[attr-defined]
    schemas = [s.json_schema for s in loaded.worker.backend.sampling.values()]
    assert [json.loads(s) for s in schemas] == [schema, {"type": "object"}]


def test_logprobs_in_ollama_responses(client: TestClient) -> None:
    body = {**CHAT, "stream": False, "logprobs": True, "top_logprobs": 1, "options": {"num_predict": 2}}
    out = client.post("/api/chat", json=body).json()
    assert [e["token"] for e in out["logprobs"]] == ["H", "e"] and len(
        out["logprobs"][0]["top_logprobs"]
    ) == 1
    lines = [json.loads(x) for x in client.post("/api/chat", json={**body, "stream": True}).text.splitlines()]
    assert [e["token"] for line in lines for e in line.get("logprobs", [])] == ["H", "e"]
    assert "logprobs" not in client.post("/api/chat", json={**CHAT, "stream": False}).json()
    bad = client.post("/api/chat", json={**CHAT, "top_logprobs": 2})
    assert bad.status_code == 400 and "top_logprobs" in bad.json()["error"]


def test_generate_suffix_and_context(client: TestClient) -> None:
    body = {"model": "tiny:1", "prompt": "ab", "suffix": "yz", "stream": False, "options": {"num_predict": 2}}
    assert client.post("/api/generate", json=body).status_code == 200
    (loaded,) = client.app.state.slm.manager.loaded()  # type: ignore[attr-defined]
    backend = loaded.worker.backend
    (rid,) = [r for r in backend.sampling]
    prompt = [t for p in backend.plans for c in p.prefill if c.request_id == rid for t in c.tokens]
    assert prompt == [250, ord("a") + 1, ord("b") + 1, 251, ord("y") + 1, ord("z") + 1, 252]
    first = client.post(
        "/api/generate",
        json={"model": "tiny:1", "prompt": "hi", "raw": True, "stream": False, "options": {"num_predict": 3}},
    ).json()
    assert first["context"] == [ord(c) + 1 for c in "hiHel"]
    again = client.post(
        "/api/generate",
        json={
            "model": "tiny:1",
            "prompt": "!",
            "raw": True,
            "context": first["context"],
            "stream": False,
            "options": {"num_predict": 1},
        },
    ).json()
    assert again["context"][:6] == [*first["context"], ord("!") + 1]
    backend.fim = None
    r = client.post("/api/generate", json=body)
    assert r.status_code == 400 and "fill-in-the-middle" in r.json()["error"]
    assert client.post("/api/generate", json={**body, "suffix": None, "context": [-1]}).status_code == 400


def test_plan_says_what_a_load_would_do_and_checks_its_settings(client: TestClient) -> None:
    plan = client.post("/api/plan", json={"model": "tiny:1"}).json()
    assert plan["model"] == "tiny:1" and plan["backend"] == "llama" and plan["loaded"] is False
    assert plan["fits"] is True and plan["evicts"] == [] and plan["what_if"] is False
    parts = plan["bytes"]
    assert parts["total"] == sum(parts[k] for k in ("weights", "repacked", "kv_cache", "compute", "overhead"))
    settings = {"num_ctx": 64, "num_parallel": 3}
    what_if = client.post("/api/plan", json={"model": "tiny:1", "options": settings})
    assert (what_if.json()["parallel"], what_if.json()["what_if"]) == (3, True)
    bad = client.post("/api/plan", json={"model": "tiny:1", "options": {"temperature": 0}})
    assert bad.status_code == 400 and "options.temperature" in bad.json()["error"]
    bad = client.post("/api/plan", json={"model": "tiny:1", "options": {"num_parallel": 1000}})
    assert bad.status_code == 400 and "num_parallel" in bad.json()["error"]
    missing = client.post("/api/plan", json={"model": "tiny:2"})
    assert missing.status_code == 404
