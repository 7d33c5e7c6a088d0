from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

CHAT = {"model": "tiny:1", "messages": [{"role": "user", "content": "hi"}]}


def sse(text: str) -> list[object]:
    out: list[object] = []
    for line in text.splitlines():
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def test_chat_json(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "Hello world"}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == 12
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 12
    assert body["model"] == "tiny:1"


def test_chat_stream_with_usage(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions",
        json={**CHAT, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse(r.text)
    assert events[-1] == "[DONE]"
    chunks = [e for e in events[:-1] if isinstance(e, dict)]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "Hello world"
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finals[0]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 12


def test_max_tokens_and_stop(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3})
    assert r.json()["choices"][0] | {} == {**r.json()["choices"][0], "finish_reason": "length"}
    assert r.json()["choices"][0]["message"]["content"] == "Hel"
    r = client.post("/v1/chat/completions", json={**CHAT, "stop": ["wor"]})
    assert r.json()["choices"][0]["message"]["content"] == "Hello "
    assert r.json()["choices"][0]["finish_reason"] == "stop"
    r = client.post("/v1/chat/completions", json={**CHAT, "max_completion_tokens": 2})
    assert r.json()["choices"][0]["message"]["content"] == "He"


def test_completions(client: TestClient) -> None:
    r = client.post("/v1/completions", json={"model": "tiny:1", "prompt": "x", "max_tokens": 5})
    body = r.json()
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"] == "Hello"
    r = client.post("/v1/completions", json={"model": "tiny:1", "prompt": "x", "stream": True})
    events = sse(r.text)
    assert events[-1] == "[DONE]"
    assert "".join(e["choices"][0]["text"] for e in events[:-1] if isinstance(e, dict)) == "Hello world"


def test_embeddings(client: TestClient) -> None:
    r = client.post("/v1/embeddings", json={"model": "tiny:1", "input": ["a", "bc"]})
    body = r.json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert len(body["data"][0]["embedding"]) == 4
    assert body["usage"]["prompt_tokens"] == 3
    r = client.post("/v1/embeddings", json={"model": "tiny:1", "input": "a", "encoding_format": "base64"})
    assert isinstance(r.json()["data"][0]["embedding"], str)


def test_models(client: TestClient) -> None:
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["tiny:1"]
    assert client.get("/v1/models/tiny:1").json()["id"] == "tiny:1"
    r = client.get("/v1/models/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"tools": [{"type": "retrieval"}]}, "tools.0"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": "g"}},
            },
            "tool_choice",
        ),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format"),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"schema": {"patternProperties": {}}},
                }
            },
            "patternProperties",
        ),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"logprobs": True, "top_logprobs": 25}, "top_logprobs"),
        ({"n": 9}, "n"),
        ({"logit_bias": {"a": 5}}, "logit_bias"),
        ({"logit_bias": {"5": 500}}, "logit_bias"),
        ({"temperature": 3}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"stop": ["a"] * 17}, "stop"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "image_url",
        ),
    ],
)
def test_unsupported_or_invalid_fields_are_400(
    client: TestClient, patch: dict[str, object], field: str
) -> None:
    r = client.post("/v1/chat/completions", json={**CHAT, **patch})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert field in error["message"]


def test_ignored_fields_are_accepted(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={**CHAT, "user": "u1", "logprobs": False, "n": 1})
    assert r.status_code == 200


def test_unknown_model_is_404_with_hint(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={**CHAT, "model": "nope"})
    assert r.status_code == 404
    assert "pull" in r.json()["error"]["message"]


def test_invalid_model_name_is_400(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", json={**CHAT, "model": "../../etc/passwd"})
    assert r.status_code == 400


def test_not_json_is_400(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", content=b"{nope")
    assert r.status_code == 400
    assert "JSON" in r.json()["error"]["message"]


def _sampling(client: TestClient) -> list[object]:
    (loaded,) = client.app.state.slm.manager.loaded()  # type: ignore[attr-defined]
    return list(loaded.worker.backend.sampling.values())


def test_response_format_reaches_the_engine_as_a_checked_schema(client: TestClient) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 1, "maximum": 3}}}
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    assert client.post("/v1/chat/completions", json={**CHAT, "response_format": rf}).status_code == 200
    assert (
        client.post(
            "/v1/chat/completions", json={**CHAT, "response_format": {"type": "json_object"}}
        ).status_code
        == 200
    )
    assert (
        client.post("/v1/chat/completions", json={**CHAT, "response_format": {"type": "text"}}).status_code
        == 200
    )
    schemas = [s.json_schema for s in _sampling(client)]  # type: ignore[attr-defined]
    assert json.loads(schemas[0]) == {"type": "object", "properties": {"n": {"enum": [1, 2, 3]}}}
    assert json.loads(schemas[1]) == {"type": "object"} and schemas[2] is None


def test_logprobs_chat_completions_and_stream(client: TestClient) -> None:
    body = {**CHAT, "max_tokens": 3, "logprobs": True, "top_logprobs": 2}
    choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
    content = choice["logprobs"]["content"]
    assert [c["token"] for c in content] == ["H", "e", "l"] and all(c["logprob"] == -0.5 for c in content)
    assert [a["logprob"] for a in content[0]["top_logprobs"]] == [-1.0, -2.0]
    assert content[0]["bytes"] == [ord("H")]
    plain = client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 3}).json()["choices"][0]
    assert plain["logprobs"] is None
    chunks = sse(client.post("/v1/chat/completions", json={**body, "stream": True}).text)
    streamed = [
        t
        for c in chunks[:-1]
        if isinstance(c, dict) and c["choices"]
        for t in (c["choices"][0]["logprobs"] or {}).get("content", [])
    ]
    assert [t["token"] for t in streamed] == ["H", "e", "l"]
    legacy = client.post(
        "/v1/completions", json={"model": "tiny:1", "prompt": "x", "max_tokens": 3, "logprobs": 1}
    ).json()
    lp = legacy["choices"][0]["logprobs"]
    assert (
        lp["tokens"] == ["H", "e", "l"]
        and lp["token_logprobs"] == [-0.5] * 3
        and lp["text_offset"] == [0, 1, 2]
    )
    assert all(len(t) == 1 for t in lp["top_logprobs"])


def test_n_choices_whole_and_streamed(client: TestClient) -> None:
    body = {**CHAT, "max_tokens": 3, "n": 3, "seed": 7}
    out = client.post("/v1/chat/completions", json=body).json()
    assert [c["index"] for c in out["choices"]] == [0, 1, 2]
    assert all(c["message"]["content"] == "Hel" for c in out["choices"])
    assert out["usage"]["completion_tokens"] == 9
    seeds = sorted(s.seed for s in _sampling(client))  # type: ignore[attr-defined]
    assert seeds == [7, 8, 9]
    chunks = sse(
        client.post(
            "/v1/chat/completions", json={**body, "stream": True, "stream_options": {"include_usage": True}}
        ).text
    )
    text: dict[int, str] = {}
    for c in chunks:
        if isinstance(c, dict) and c["choices"]:
            choice = c["choices"][0]
            text[choice["index"]] = text.get(choice["index"], "") + (choice["delta"].get("content") or "")
    assert text == {0: "Hel", 1: "Hel", 2: "Hel"}
    assert chunks[-2]["usage"]["completion_tokens"] == 9  # type: ignore[index]


def test_logit_bias_reaches_the_engine(client: TestClient) -> None:
    r = client.post(
        "/v1/chat/completions", json={**CHAT, "max_tokens": 2, "logit_bias": {"72": -100, "5": 3.5}}
    )
    assert r.status_code == 200
    assert _sampling(client)[-1].logit_bias == ((72, -100.0), (5, 3.5))  # type: ignore[attr-defined]
