"""Reasoning passthrough: template variables, refusals, and splitting <think> blocks."""

from __future__ import annotations

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
    texts = loaded["thinker:1"].worker.backend.tokenized
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
