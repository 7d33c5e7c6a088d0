"""The official `openai` package against a real server and the real default model."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from tests.integration.conftest import MODEL, Server

QUESTION = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture
def client(server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_chat_non_stream(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=30, temperature=0)  # type: ignore[arg-type]
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content and choice.message.content.strip()
    assert choice.finish_reason in {"stop", "length"}
    assert r.usage is not None and 0 < r.usage.completion_tokens <= 30
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_matches_non_stream_when_greedy(client: openai.OpenAI) -> None:
    full = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)  # type: ignore[arg-type]
    stream = client.chat.completions.create(
        model=MODEL,
        messages=QUESTION,  # type: ignore[arg-type]
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, reasons, usage = "", [], None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.finish_reason:
                reasons.append(choice.finish_reason)
    assert text == full.choices[0].message.content
    assert reasons == [full.choices[0].finish_reason]
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens  # type: ignore[union-attr]


def test_completions_max_tokens_gives_length(client: openai.OpenAI) -> None:
    r = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=7, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage is not None and r.usage.completion_tokens == 7
    assert r.choices[0].text


def test_stop_sequence_is_honored(client: openai.OpenAI) -> None:
    base = client.completions.create(model=MODEL, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0)
    text = base.choices[0].text
    assert len(text) > 6
    stop = text[3:6]
    r = client.completions.create(
        model=MODEL, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[stop]
    )
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == text[: text.index(stop)]


def test_seeded_sampling_is_reproducible(client: openai.OpenAI) -> None:
    def sample(seed: int) -> str | None:
        r = client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            max_tokens=20,
            temperature=1.0,
            seed=seed,  # type: ignore[arg-type]
        )
        return r.choices[0].message.content

    assert sample(1234) == sample(1234)


def test_embeddings(client: openai.OpenAI) -> None:
    r = client.embeddings.create(model=MODEL, input=["the cat sat", "quarterly revenue grew"])
    a, b = (d.embedding for d in r.data)
    assert len(a) == len(b) == 576  # SmolLM2-135M width
    assert any(x != 0 for x in a)
    assert a != b
    assert r.usage.prompt_tokens > 0


def test_models(client: openai.OpenAI) -> None:
    assert MODEL in [m.id for m in client.models.list()]
    assert client.models.retrieve(MODEL).id == MODEL


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="not found"):
        client.chat.completions.create(model="no-such-model", messages=QUESTION)  # type: ignore[arg-type]


def test_unsupported_field_is_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="functions"):
        client.chat.completions.create(
            model=MODEL,
            messages=QUESTION,
            functions=[{"name": "f", "parameters": {}}],  # type: ignore[arg-type,list-item]
        )
    with pytest.raises(openai.BadRequestError, match="logit_bias"):
        client.chat.completions.create(model=MODEL, messages=QUESTION, logit_bias={"999999": 10})  # type: ignore[arg-type]


def test_n_choices_and_logit_bias_with_the_real_engine(client: openai.OpenAI) -> None:
    from slmkit.engine.backends.llama_offline import Scorer
    from slmkit.store.default import packaged_path

    r = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say a word."}], max_tokens=6, n=3, seed=1
    )
    assert [c.index for c in r.choices] == [0, 1, 2] and all(c.message.content for c in r.choices)
    assert r.usage is not None and 3 <= r.usage.completion_tokens <= 18
    prompt = "The capital of France is"
    base = client.completions.create(model=MODEL, prompt=prompt, max_tokens=1, temperature=0)
    with Scorer(packaged_path(), n_ctx=64) as scorer:
        (banned,) = scorer.tokenize(base.choices[0].text, add_bos=False)
    biased = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=1, temperature=0, logit_bias={str(banned): -100}
    )
    assert biased.choices[0].text != base.choices[0].text
