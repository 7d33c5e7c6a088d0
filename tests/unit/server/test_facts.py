"""Every answer says what happened, on every dialect: the `slm` object of the whole body or
of the last stream event, X-Slm-* headers on whole answers, and truncation only on request
(fake workers: a real EngineCore over a byte-per-token backend with a 64-token window)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

FACTS = {"prompt_tokens", "cached_tokens", "dropped_tokens", "draft_tokens", "accepted_tokens",
         "context_window", "backend", "device", "threads"}  # fmt: skip
USER = [{"role": "user", "content": "Hi"}]
DIALECTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ollama-chat": ("/api/chat", {"model": "tiny:1", "messages": USER}),
    "ollama-generate": ("/api/generate", {"model": "tiny:1", "prompt": "Hi"}),
    "openai-chat": ("/v1/chat/completions", {"model": "tiny:1", "messages": USER}),
    "openai-completions": ("/v1/completions", {"model": "tiny:1", "prompt": "Hi"}),
    "anthropic": ("/v1/messages", {"model": "tiny:1", "messages": USER, "max_tokens": 16}),
    "responses": ("/v1/responses", {"model": "tiny:1", "input": "Hi"}),
}


def _last_stream_facts(text: str) -> dict[str, Any]:
    """The `slm` object of the last event that has one (SSE data lines or NDJSON lines)."""
    found = None
    for line in text.splitlines():
        line = line.removeprefix("data:").strip()
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        for holder in (event, event.get("response") or {}):
            if "slm" in holder:
                found = holder["slm"]
    assert found is not None, text[-500:]
    return found


@pytest.mark.parametrize("dialect", list(DIALECTS))
def test_every_dialect_says_what_happened(client: TestClient, dialect: str) -> None:
    path, body = DIALECTS[dialect]
    whole = client.post(path, json={**body, "stream": False})
    assert whole.status_code == 200, whole.text
    facts = whole.json()["slm"]
    assert set(facts) == FACTS
    assert facts["prompt_tokens"] > 0 and facts["dropped_tokens"] == 0 and facts["context_window"] == 64
    assert facts["backend"] == "llama.cpp" and facts["device"] == "cpu"
    assert whole.headers["x-slm-prompt-tokens"] == str(facts["prompt_tokens"])
    assert whole.headers["x-slm-dropped-tokens"] == "0" and whole.headers["x-slm-backend"] == "llama.cpp"
    streamed = client.post(path, json={**body, "stream": True})
    assert streamed.status_code == 200
    again = _last_stream_facts(streamed.text)
    assert again == facts | {"cached_tokens": again["cached_tokens"]}  # the second run may reuse the cache


LONG = "x" * 100  # more than the fake model's 64-token window
LONG_CHAT = [{"role": "user", "content": LONG}]


@pytest.mark.parametrize(
    ("path", "body", "ask"),
    [
        ("/api/chat", {"model": "tiny:1", "messages": LONG_CHAT}, {"truncate": True}),
        ("/api/generate", {"model": "tiny:1", "prompt": LONG}, {"truncate": True}),
        ("/v1/chat/completions", {"model": "tiny:1", "messages": LONG_CHAT}, {"truncate_prompt_tokens": -1}),
        ("/v1/completions", {"model": "tiny:1", "prompt": LONG}, {"truncate_prompt_tokens": 40}),
        ("/v1/responses", {"model": "tiny:1", "input": LONG}, {"truncation": "auto"}),
    ],
)  # fmt: skip
def test_truncation_only_when_asked_and_always_reported(
    client: TestClient, path: str, body: dict[str, Any], ask: dict[str, Any]
) -> None:
    limits = {"options": {"num_predict": 8}} if path.startswith("/api") else (
        {"max_output_tokens": 8} if "responses" in path else {"max_tokens": 8})  # fmt: skip
    refused = client.post(path, json={**body, **limits, "stream": False})
    assert refused.status_code == 400 and "truncate" in refused.text  # the way out is named
    cut = client.post(path, json={**body, **ask, **limits, "stream": False})
    assert cut.status_code == 200, cut.text
    facts = cut.json()["slm"]
    assert facts["dropped_tokens"] > 0 and facts["prompt_tokens"] < 64
    assert cut.headers["x-slm-dropped-tokens"] == str(facts["dropped_tokens"])
    if "truncate_prompt_tokens" in ask and ask["truncate_prompt_tokens"] > 0:
        assert facts["prompt_tokens"] == ask["truncate_prompt_tokens"]


def test_bad_truncation_values_are_refused_naming_the_field(client: TestClient) -> None:
    body = {"model": "tiny:1", "messages": USER, "truncate_prompt_tokens": 0}
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and "truncate_prompt_tokens" in r.json()["error"]["message"]
    r = client.post("/v1/chat/completions", json={**body, "truncate_prompt_tokens": -5})
    assert r.status_code == 400 and "truncate_prompt_tokens" in r.json()["error"]["message"]
    r = client.post("/v1/responses", json={"model": "tiny:1", "input": "Hi", "truncation": "sideways"})
    assert r.status_code == 400 and "truncation" in r.json()["error"]["message"]


def test_speculative_counts_use_openais_prediction_fields(client: TestClient) -> None:
    usage = client.post("/v1/chat/completions", json={"model": "tiny:1", "messages": USER}).json()["usage"]
    details = usage["completion_tokens_details"]
    assert details["accepted_prediction_tokens"] == 0 and details["rejected_prediction_tokens"] == 0
