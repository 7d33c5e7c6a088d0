"""Three slmkit replicas behind vLLM's router (vllm-router, its real binary), on loopback.

The router's cache-aware policy renders each request on the workers (the render endpoints)
and sends a conversation back to the replica that holds its prefix: each later turn finds
most of its prompt in that replica's prompt cache. Streaming and completions pass through.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.integration.conftest import Server, start_server, stop_server, third_party_server

pytestmark = pytest.mark.integration
ROUTER = Path(sys.executable).parent / "vllm-router"
MODEL = "smollm2:135m"


@pytest.fixture(scope="module")
def replicas(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    tmp = tmp_path_factory.mktemp("replicas")
    servers: list[Server] = []
    try:
        for i in range(3):  # one shared store, read-only here; one thread and two slots each
            servers.append(
                start_server(models_dir, tmp / f"r{i}.log", SLM_NUM_THREADS="1", SLM_NUM_PARALLEL="2")
            )
        yield servers
    finally:
        for server in servers:
            stop_server(server)


@pytest.fixture(scope="module")
def router(replicas: list[Server], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not ROUTER.exists():
        pytest.skip("vllm-router is not installed (make test-setup installs it)")
    urls = [s.url for s in replicas]
    log = tmp_path_factory.mktemp("router") / "router.log"

    def argv(port: int) -> list[str]:
        return [str(ROUTER), "--host", "127.0.0.1", "--port", str(port), "--policy", "cache_aware",
                "--worker-urls", *urls]  # fmt: skip

    with third_party_server(argv, "/health", log) as url:
        yield url


def test_conversations_keep_their_prefix_cache_behind_the_cache_aware_router(router: str) -> None:
    client = openai.OpenAI(base_url=f"{router}/v1", api_key="unused", timeout=120, max_retries=0)
    # two users with long contexts. Idle, the router sends new conversations to its first worker
    # (its load-based fallback): a replica's prompt cache holds one prefix per slot (two here)
    conversations = [
        [{"role": "system", "content": f"{topic.capitalize()} is the only subject here. " * 10}]
        for topic in ("sailing boats", "baking bread")
    ]
    hits: list[tuple[int, int, int]] = []  # (turn, prompt tokens, cached tokens)
    for turn in range(3):
        for messages in conversations:  # interleaved, as users would be
            messages.append({"role": "user", "content": f"Turn {turn}: name a colour."})
            reply = client.chat.completions.create(
                model=MODEL, messages=messages, max_tokens=8, temperature=0
            )
            usage = reply.usage
            assert usage is not None and usage.prompt_tokens_details is not None
            hits.append((turn, usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens or 0))
            messages.append({"role": "assistant", "content": reply.choices[0].message.content or ""})
    later = [(prompt, cached) for turn, prompt, cached in hits if turn > 0]
    assert all(cached >= prompt // 2 for prompt, cached in later), hits  # the prefix was there
    streamed = client.chat.completions.create(
        model=MODEL, messages=conversations[0][:2], max_tokens=6, stream=True, temperature=0
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    completion = client.completions.create(model=MODEL, prompt="The sky is", max_tokens=4)
    assert completion.choices[0].text and completion.usage is not None
    client.close()
