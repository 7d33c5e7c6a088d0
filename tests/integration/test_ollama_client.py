"""The official `ollama` package against a real server and the real default model."""

from __future__ import annotations

from collections.abc import Iterator

import ollama
import pytest

from tests.integration.conftest import MODEL, Server

MESSAGES = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def client(server: Server) -> Iterator[ollama.Client]:
    c = ollama.Client(host=server.url)
    yield c
    c._client.close()


def test_chat_non_stream(client: ollama.Client) -> None:
    r = client.chat(model=MODEL, messages=MESSAGES, options={"num_predict": 20, "temperature": 0})
    assert r.message.role == "assistant" and r.message.content
    assert r.done and r.done_reason in {"stop", "length"}
    assert r.eval_count and 0 < r.eval_count <= 20
    assert r.prompt_eval_count and r.prompt_eval_count > 0
    assert r.total_duration and r.eval_duration and r.prompt_eval_duration
    assert r.total_duration >= r.eval_duration


def test_chat_stream(client: ollama.Client) -> None:
    parts = list(
        client.chat(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            options={"num_predict": 16, "temperature": 0},
        )
    )
    assert parts[-1].done and not any(p.done for p in parts[:-1])
    text = "".join(p.message.content or "" for p in parts)
    full = client.chat(model=MODEL, messages=MESSAGES, options={"num_predict": 16, "temperature": 0})
    assert text == full.message.content


def test_generate_num_predict_gives_length(client: ollama.Client) -> None:
    r = client.generate(
        model=MODEL, prompt="Write a long story about a dragon.", options={"num_predict": 9, "temperature": 0}
    )
    assert r.done_reason == "length" and r.eval_count == 9
    assert r.response


def test_num_ctx_is_the_requests_own_window(client: ollama.Client) -> None:
    """Ollama clients send num_ctx: prompt and answer fit in it (no reload, other users'
    windows unchanged); a larger one than the model's is capped, a too small one is a 400."""
    r = client.generate(
        model=MODEL, prompt="Write a long story about a dragon.", options={"num_ctx": 64, "temperature": 0}
    )
    assert r.done_reason == "length" and (r.prompt_eval_count or 0) + (r.eval_count or 0) <= 64
    big = client.generate(
        model=MODEL, prompt="Hi", options={"num_ctx": 1 << 20, "num_predict": 4, "temperature": 0}
    )
    assert big.eval_count == 4
    with pytest.raises(ollama.ResponseError, match="num_ctx of 16"):
        client.generate(model=MODEL, prompt="word " * 40, options={"num_ctx": 16})


def test_generate_seed_reproducible(client: ollama.Client) -> None:
    opts = {"seed": 7, "temperature": 0.9, "num_predict": 16}
    a = client.generate(model=MODEL, prompt="Tell me a fact.", options=opts).response
    b = client.generate(model=MODEL, prompt="Tell me a fact.", options=opts).response
    assert a == b


def test_list_show_ps(client: ollama.Client) -> None:
    models = {m.model: m for m in client.list().models}
    assert MODEL in models
    entry = models[MODEL]
    assert entry.size and entry.size > 90_000_000
    assert entry.digest and len(entry.digest) == 64
    assert entry.details and entry.details.quantization_level == "Q4_1"
    show = client.show(MODEL)
    assert show.template and "im_start" in show.template
    assert show.modelinfo and show.modelinfo["general.architecture"] == "llama"
    assert MODEL in [m.model for m in client.ps().models]


def test_embed(client: ollama.Client) -> None:
    r = client.embed(model=MODEL, input=["hello", "world"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) == 576
    assert any(x != 0 for x in r.embeddings[0])


def test_copy_and_delete(client: ollama.Client) -> None:
    client.copy(MODEL, "smollm2:copy")
    assert "smollm2:copy" in [m.model for m in client.list().models]
    client.delete("smollm2:copy")
    assert "smollm2:copy" not in [m.model for m in client.list().models]
    assert MODEL in [m.model for m in client.list().models]


def test_unknown_model_is_404(client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="no-such-model", messages=MESSAGES)
    assert info.value.status_code == 404


def test_generate_context_raw_and_suffix(client: ollama.Client) -> None:
    first = client.generate(
        model=MODEL, prompt="My name is Ada.", options={"num_predict": 5, "temperature": 0}
    )
    assert first.context and len(first.context) > (first.eval_count or 0)
    follow = client.generate(
        model=MODEL,
        prompt="What is my name?",
        context=first.context,
        options={"num_predict": 5, "temperature": 0},
    )
    assert follow.context and follow.context[: len(first.context)] == first.context
    raw = client.generate(
        model=MODEL, prompt="The capital of France is", raw=True, options={"num_predict": 3, "temperature": 0}
    )
    assert raw.response
    with pytest.raises(ollama.ResponseError) as info:
        client.generate(model=MODEL, prompt="def f(", suffix="return x")
    assert info.value.status_code == 400 and "fill-in-the-middle" in str(info.value)
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model=MODEL, messages=[{"role": "user", "content": "hi"}], think=True)
    assert info.value.status_code == 400 and "thinking" in str(info.value)
