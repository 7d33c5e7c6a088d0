"""vLLM's render endpoints and the chat form of /tokenize: the prompt a request becomes, unrun
(vLLM's router calls them to keep a conversation's prefix on one replica)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.unit.server.fakes import FakeWorkers

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]


def prompt_tokens(client: TestClient, messages: list[dict[str, str]]) -> int:
    chat = client.post(
        "/v1/chat/completions", json={"model": "tiny:1", "messages": messages, "max_tokens": 2}
    )
    assert chat.status_code == 200, chat.text
    return int(chat.json()["usage"]["prompt_tokens"])


def test_chat_render_is_the_prompt_the_chat_endpoint_runs(client: TestClient) -> None:
    body = {"model": "tiny:1", "messages": MESSAGES, "max_tokens": 7, "temperature": 0.2, "stop": ["x"]}
    rendered = client.post("/v1/chat/completions/render", json=body)
    assert rendered.status_code == 200, rendered.text
    out = rendered.json()
    assert len(out["token_ids"]) == prompt_tokens(client, MESSAGES)
    assert out["request_id"].startswith("chatcmpl-") and out["features"] is None
    params = out["sampling_params"]
    assert params["max_tokens"] == 7 and params["temperature"] == 0.2 and params["stop"] == ["x"]


def test_completion_render_gives_one_request_per_prompt(client: TestClient) -> None:
    rendered = client.post("/v1/completions/render", json={"model": "tiny:1", "prompt": ["ab", "abcd"]})
    assert rendered.status_code == 200, rendered.text
    first, second = rendered.json()
    assert 0 < len(first["token_ids"]) < len(second["token_ids"])


def test_tokenize_chat_form_matches_the_chat_prompt(client: TestClient) -> None:
    chat = client.post("/tokenize", json={"model": "tiny:1", "messages": MESSAGES})
    assert chat.status_code == 200, chat.text
    assert chat.json()["count"] == len(chat.json()["tokens"]) == prompt_tokens(client, MESSAGES)
    bare = client.post("/tokenize", json={"messages": MESSAGES, "add_generation_prompt": False}).json()
    assert bare["count"] < chat.json()["count"]  # no assistant turn opened; the default model
    plain = client.post("/tokenize", json={"model": "tiny:1", "prompt": "Hello"})
    assert plain.status_code == 200 and plain.json()["count"] > 0


def test_bad_render_and_tokenize_requests_are_refused_like_the_real_ones(
    client: TestClient, workers: FakeWorkers
) -> None:
    both = client.post("/tokenize", json={"prompt": "a", "messages": MESSAGES})
    assert both.status_code == 400 and "prompt or messages: give exactly one" in both.text
    missing = client.post("/v1/chat/completions/render", json={"model": "nope:1", "messages": MESSAGES})
    assert missing.status_code == 404
    workers.n_ctx = 16
    long = [{"role": "user", "content": "word " * 200}]
    refused = client.post("/v1/chat/completions/render", json={"model": "tiny:1", "messages": long})
    ran = client.post("/v1/chat/completions", json={"model": "tiny:1", "messages": long})
    assert refused.status_code == ran.status_code == 400
    assert "more than the context window" in refused.json()["error"]["message"]
    assert refused.json()["error"]["message"] == ran.json()["error"]["message"]
