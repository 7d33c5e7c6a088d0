"""SLM_KV_UNIFIED: one KV pool for all slots. Concurrent requests and the prompt cache work
as with a pool per slot (the scheduler still caps each slot at its context)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from tests.integration.conftest import MODEL, start_server, stop_server

HISTORY = "The lighthouse keeper wrote in the log every night about wind, rain and ships. " * 6


def test_a_shared_pool_serves_concurrent_requests_and_reuses_prefixes(
    models_dir: Path, tmp_path: Path
) -> None:
    s = start_server(models_dir, tmp_path / "server.log", SLM_KV_UNIFIED="1", SLM_NUM_PARALLEL="2")
    try:
        with openai.OpenAI(base_url=f"{s.url}/v1", api_key="x", max_retries=0) as client:

            def ask(question: str) -> openai.types.chat.ChatCompletion:
                return client.chat.completions.create(
                    model=MODEL,
                    messages=[{"role": "user", "content": HISTORY + question}],
                    temperature=0,
                    max_tokens=16,
                )

            with ThreadPoolExecutor(2) as pool:
                answers = list(pool.map(ask, ["Who wrote?", "What did he write about?"]))
            for a in answers:
                assert (
                    a.usage is not None and a.usage.completion_tokens == 16 and a.choices[0].message.content
                )
            again = ask("Who wrote?")  # the same prompt: its prefix is in the pool
            assert again.usage is not None and again.usage.prompt_tokens_details is not None
            assert again.usage.prompt_tokens_details.cached_tokens > 0
    finally:
        stop_server(s)
