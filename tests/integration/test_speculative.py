"""Prompt-lookup speculation (SLM_DRAFT_TOKENS) with the real model, through the official
clients: a copying answer gets confirmed guesses (counted in /metrics), a streamed answer
equals the non-streamed one, and logprobs, stop strings and max_tokens behave as without it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Server, start_server, stop_server

MODEL = "smollm2:135m"
PARAGRAPH = (
    "The lighthouse stood on a rock at the mouth of the harbor. Every night the keeper climbed "
    "the one hundred and twelve steps, trimmed the wick, wound the clockwork that turned the "
    "lens, and wrote the weather in the log: wind from the west, light rain, three ships seen."
)
COPY = [{"role": "user", "content": f"Repeat the following text exactly, word for word:\n\n{PARAGRAPH}"}]


@pytest.fixture(scope="module")
def spec_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = start_server(models_dir, tmp_path_factory.mktemp("spec") / "server.log", SLM_DRAFT_TOKENS="8")
    yield s
    stop_server(s)


@pytest.fixture
def client(spec_server: Server) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{spec_server.url}/v1", api_key="unused", max_retries=0) as c:
        yield c


def copy(client: openai.OpenAI, **options: Any) -> Any:
    """The copying question, greedy, with these request options."""
    return client.chat.completions.create(model=MODEL, messages=COPY, temperature=0, **options)  # type: ignore[arg-type]


def counters(url: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=30).text)
        for sample in family.samples
        if sample.name.startswith("slm_spec_decode") and sample.labels.get("model") == MODEL
    }


def test_a_copying_answer_is_drafted_and_confirmed(spec_server: Server, client: openai.OpenAI) -> None:
    before = counters(spec_server.url)
    answer = copy(client, max_tokens=120)
    after = counters(spec_server.url)
    drafted = after["slm_spec_decode_draft_tokens_total"] - before.get(
        "slm_spec_decode_draft_tokens_total", 0
    )
    accepted = after["slm_spec_decode_accepted_tokens_total"] - before.get(
        "slm_spec_decode_accepted_tokens_total", 0
    )
    assert 0 < accepted <= drafted
    text = answer.choices[0].message.content or ""
    assert "lighthouse" in text and "keeper" in text  # a copy, not noise
    assert answer.usage is not None and answer.usage.completion_tokens <= 120
    streamed = "".join(
        c.choices[0].delta.content or "" for c in copy(client, max_tokens=120, stream=True) if c.choices
    )
    # a copy too; not the same text to the character: the second request reads its prompt
    # from the cache in a differently shaped batch, and greedy output is not batch-invariant
    # (docs/api.md, "Determinism")
    assert "lighthouse" in streamed and "keeper" in streamed


def test_max_tokens_stop_and_logprobs_hold_under_speculation(
    spec_server: Server, client: openai.OpenAI
) -> None:
    cut = copy(client, max_tokens=7)
    assert cut.usage is not None and cut.usage.completion_tokens == 7
    assert cut.choices[0].finish_reason == "length"
    stopped = copy(client, max_tokens=120, stop=["harbor"])
    assert "harbor" not in (stopped.choices[0].message.content or "")
    assert stopped.choices[0].finish_reason == "stop"
    scored = copy(client, max_tokens=24, logprobs=True, top_logprobs=2)
    assert scored.usage is not None and scored.choices[0].logprobs is not None
    assert len(scored.choices[0].logprobs.content or []) == scored.usage.completion_tokens
    native = ollama.Client(host=spec_server.url)
    try:
        reply = native.chat(model=MODEL, messages=COPY, options={"temperature": 0, "num_predict": 16})
    finally:
        native._client.close()
    assert reply.eval_count == 16
