"""Every answer says what happened, through the real clients and the real default model:
cached prompt tokens on a second turn, tokens dropped only when truncation was asked for (a
400 naming the way out otherwise), where it ran; the same facts in X-Slm-* headers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.integration.conftest import MODEL, Server, start_server, stop_server

pytestmark = pytest.mark.integration
WINDOW = 1024  # a small window: prompts over it are quick to read
SYSTEM = "You are a helpful assistant who answers in one short sentence. " * 12
LONG = "The quick brown fox jumps over the lazy dog. " * 120  # ~1300 tokens: over the window


@pytest.fixture(scope="module")
def server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("facts") / "server.log"
    s = start_server(models_dir, log, SLM_CONTEXT_LENGTH=str(WINDOW))
    yield s
    stop_server(s)


def _openai(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)


def test_openai_chat_reports_cache_and_where_it_ran(server: Server) -> None:
    client = _openai(server)
    messages: list[Any] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Name a color."},
    ]
    first = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, temperature=0)
    messages += [{"role": "assistant", "content": first.choices[0].message.content},
                 {"role": "user", "content": "And another?"}]  # fmt: skip
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=messages, max_tokens=8)
    second = raw.parse()
    facts = (second.model_extra or {})["slm"]
    assert second.usage is not None and second.usage.prompt_tokens_details is not None
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached and cached >= first.usage.prompt_tokens - 4 and facts["cached_tokens"] == cached  # type: ignore[union-attr]
    assert facts["prompt_tokens"] == second.usage.prompt_tokens and facts["dropped_tokens"] == 0
    assert facts["backend"] == "llama.cpp" and facts["device"] == "cpu" and facts["threads"] >= 1
    assert facts["context_window"] == WINDOW
    assert raw.headers["x-slm-cached-tokens"] == str(cached) and raw.headers["x-slm-context-window"] == str(
        WINDOW
    )
    stream = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=8, stream=True)
    last = [chunk for chunk in stream][-1]
    assert (last.model_extra or {})["slm"]["prompt_tokens"] == second.usage.prompt_tokens


def test_truncation_is_asked_for_and_reported_on_each_dialect(server: Server) -> None:
    client = _openai(server)
    long_chat = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": LONG + "Bye."}]
    with pytest.raises(openai.BadRequestError, match="truncate"):
        client.chat.completions.create(model=MODEL, messages=long_chat, max_tokens=8)  # type: ignore[arg-type]
    cut = client.chat.completions.create(model=MODEL, messages=long_chat, max_tokens=8,  # type: ignore[arg-type]
                                         extra_body={"truncate_prompt_tokens": -1})  # fmt: skip
    facts = (cut.model_extra or {})["slm"]
    assert facts["dropped_tokens"] > 0 and cut.usage is not None and cut.usage.prompt_tokens <= WINDOW - 8

    response = client.responses.create(model=MODEL, input=LONG, max_output_tokens=16, truncation="auto")
    assert (response.model_extra or {})["slm"]["dropped_tokens"] > 0
    with pytest.raises(openai.BadRequestError, match="truncate"):
        client.responses.create(model=MODEL, input=LONG, max_output_tokens=16)

    body = {"model": MODEL, "messages": long_chat, "stream": False, "options": {"num_predict": 8}}
    refused = httpx.post(f"{server.url}/api/chat", json=body, timeout=120)
    assert refused.status_code == 400 and "truncate" in refused.json()["error"]
    ollama_cut = httpx.post(f"{server.url}/api/chat", json={**body, "truncate": True}, timeout=300)
    assert ollama_cut.status_code == 200 and ollama_cut.json()["slm"]["dropped_tokens"] > 0
    assert ollama_cut.headers["x-slm-dropped-tokens"] == str(ollama_cut.json()["slm"]["dropped_tokens"])


def test_anthropic_reports_the_cache_and_the_facts(server: Server) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="unused", max_retries=0)
    messages: list[Any] = [{"role": "user", "content": "Name a color."}]
    first = client.messages.create(model=MODEL, system=SYSTEM, messages=messages, max_tokens=8)
    messages += [{"role": "assistant", "content": first.content[0].text},  # type: ignore[union-attr]
                 {"role": "user", "content": "And another?"}]  # fmt: skip
    second = client.messages.create(model=MODEL, system=SYSTEM, messages=messages, max_tokens=8)
    facts = (second.model_extra or {})["slm"]
    assert (
        second.usage.cache_read_input_tokens
        and facts["cached_tokens"] == second.usage.cache_read_input_tokens
    )
    assert facts["prompt_tokens"] == second.usage.input_tokens and facts["backend"] == "llama.cpp"
