"""Reasoning passthrough: template variables, refusals, and splitting <think> blocks."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from slmkit.answer.reasoning import Splitter, split
from slmkit.store import ModelStore
from slmkit.store.gguf_info import read_info

THINKING = "{% if enable_thinking %}<think>{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"


def test_split_whole_and_streamed() -> None:
    assert split("<think>step 1\nstep 2</think>\n\nThe answer") == ("step 1\nstep 2", "The answer")
    assert split("No thinking here") == ("", "No thinking here")
    assert split("<think>cut off") == ("cut off", "")
    s = Splitter()
    pieces = [s.feed(p) for p in ["<th", "ink>ab", "c</th", "ink> Ans", "wer"]] + [s.flush()]
    assert "".join(t for t, _ in pieces) == "abc" and "".join(a for _, a in pieces).strip() == "Answer"
    plain = Splitter()
    assert [plain.feed(p) for p in ["<b>", "old"]] == [("", "<b>"), ("", "old")]


@pytest.fixture
def thinker(store: ModelStore) -> str:
    base = store.get("tiny:1")
    store.create(
        base.name.__class__.parse("thinker:1"),
        base.manifest.model_layer.digest,
        read_info(base.model_path),
        template=THINKING,
    )
    return "thinker:1"


def test_think_reaches_the_template_and_is_refused_without_support(client: TestClient, thinker: str) -> None:
    chat = {"model": thinker, "messages": [{"role": "user", "content": "hi"}], "stream": False}
    assert client.post("/api/chat", json={**chat, "think": True}).status_code == 200
    assert client.post("/v1/chat/completions", json={**chat, "reasoning_effort": "low"}).status_code == 200
    off = {**chat, "chat_template_kwargs": {"enable_thinking": False}}
    assert client.post("/v1/chat/completions", json=off).status_code == 200
    loaded = {m.name: m for m in client.app.state.slm.manager.loaded()}  # type: ignore[attr-defined]
    texts = [t for t in loaded["thinker:1"].worker.backend.tokenized if t != "</think>\n\n"]  # not the marker
    assert [t.startswith("<think>") for t in texts] == [True, True, False]
    plain = {
        "model": "tiny:1",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": False,
        "think": True,
    }
    r = client.post("/api/chat", json=plain)
    assert r.status_code == 400 and "does not support thinking" in r.json()["error"]
    assert client.post("/api/chat", json={**plain, "think": False}).status_code == 200
    assert client.post("/api/chat", json={**plain, "think": "extreme"}).status_code == 400
    bad = {**chat, "chat_template_kwargs": {"add_vision_id": True}}
    assert client.post("/v1/chat/completions", json=bad).status_code == 400


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/v1/chat/completions", {"thinking_token_budget": 8}),
        ("/v1/responses", {"thinking_token_budget": 8}),
        ("/v1/messages", {"thinking": {"type": "enabled", "budget_tokens": 8}, "max_tokens": 200}),
    ],
)
def test_a_reasoning_budget_ends_the_thinking_and_the_answer_follows(
    client: TestClient, thinker: str, workers: Any, path: str, fields: dict[str, Any]
) -> None:
    workers.script = b"<think>" + b"x" * 40 + b"</think>\n\nThe answer."
    workers.n_ctx = 512
    body: dict[str, Any] = {"model": thinker, **fields}
    if path == "/v1/responses":
        body["input"] = "hi"
    else:
        body["messages"] = [{"role": "user", "content": "hi"}]
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    if path == "/v1/chat/completions":
        message = out["choices"][0]["message"]
        assert message["reasoning_content"] == "x" * 8 and message["content"]
        assert out["usage"]["completion_tokens_details"]["reasoning_tokens"] == 8
    elif path == "/v1/responses":
        reasoning_item, message = out["output"][0], out["output"][-1]
        assert reasoning_item["content"][0]["text"] == "x" * 8 and message["content"][0]["text"]
        assert out["usage"]["output_tokens_details"]["reasoning_tokens"] == 8
    else:
        assert out["content"][0] == {"type": "thinking", "thinking": "x" * 8, "signature": ""}
        assert out["content"][1]["text"]


def test_effort_levels_set_budgets() -> None:
    from slmkit.answer.reasoning import budget

    assert budget("low", None) == 512 and budget("medium", None) == 2048 and budget("high", None) is None
    assert budget(True, None) is None and budget("low", 10) == 10 and budget(None, 0) == 0
