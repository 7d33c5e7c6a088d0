"""slmkit in front of an OpenAI-compatible upstream (here: a second, real slmkit): both API
families, streaming included, with keys on both sides and metrics on the front one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from slmkit.security.keys import KeyStore
from tests.integration.conftest import MODEL, Server, start_server, stop_server

pytestmark = pytest.mark.integration
REMOTE = "remote:latest"


@pytest.fixture(scope="module")
def pair(
    models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Server, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("upstream")
    back_keys = KeyStore(tmp / "back-keys.json")
    _, back_secret = back_keys.create("inference", name="front")
    (tmp / "upstream-key").write_text(back_secret + "\n")
    back = start_server(
        models_dir, tmp / "back.log", SLM_KEYS_FILE=str(tmp / "back-keys.json"), SLM_MAX_TOKENS="64"
    )
    front_keys = KeyStore(tmp / "front-keys.json")
    secrets = {scope: front_keys.create(scope, name=scope)[1] for scope in ("inference", "metrics")}
    try:
        front = start_server(
            tmp / "front-models",
            tmp / "front.log",
            SLM_KEYS_FILE=str(tmp / "front-keys.json"),
            SLM_UPSTREAMS=f"remote={back.url}/v1#{MODEL}",
            SLM_UPSTREAM_API_KEY_FILE=str(tmp / "upstream-key"),
            SLM_DEFAULT_MODEL=REMOTE,
        )
    except BaseException:
        stop_server(back)
        raise
    yield front, secrets
    stop_server(front)
    stop_server(back)


def test_openai_client_through_the_upstream(pair: tuple[Server, dict[str, str]]) -> None:
    front, secrets = pair
    with openai.OpenAI(base_url=f"{front.url}/v1", api_key=secrets["inference"], max_retries=0) as client:
        assert REMOTE in [m.id for m in client.models.list().data]
        chat = client.chat.completions.create(
            model="remote", messages=[{"role": "user", "content": "Say hi."}], max_tokens=8, temperature=0
        )
        assert chat.choices[0].message.content and chat.usage is not None and chat.usage.completion_tokens > 0
        assert chat.usage.prompt_tokens > 0  # the upstream's own count
        pieces = [
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="remote",
                messages=[{"role": "user", "content": "Count to three."}],
                max_tokens=12,
                stream=True,
            )
            if c.choices
        ]
        assert len(pieces) > 1 and "".join(pieces).strip()
        raw = client.completions.create(
            model="remote", prompt="Once upon a time", max_tokens=6, temperature=0
        )
        assert raw.choices[0].text and raw.choices[0].finish_reason == "length"
    with (
        openai.OpenAI(base_url=f"{front.url}/v1", api_key="slm-nope", max_retries=0) as stranger,
        pytest.raises(openai.AuthenticationError),
    ):
        stranger.chat.completions.create(model="remote", messages=[{"role": "user", "content": "x"}])


def test_ollama_client_through_the_upstream_and_metrics(pair: tuple[Server, dict[str, str]]) -> None:
    front, secrets = pair
    client = ollama.Client(host=front.url, headers={"Authorization": f"Bearer {secrets['inference']}"})
    try:
        parts = [
            part.message.content
            for part in client.chat(
                model="remote",
                messages=[{"role": "user", "content": "Hello!"}],
                stream=True,
                options={"num_predict": 8},
            )
        ]
        assert "".join(parts).strip()
        generated = client.generate(
            model="remote", prompt="The sky is", options={"num_predict": 5, "temperature": 0}
        )
        assert generated.response and generated.eval_count and generated.done
        show = client.show("remote")
        assert show.modelinfo is not None and show.modelinfo["general.architecture"] == "upstream"
    finally:
        client._client.close()
    metrics = httpx.get(
        f"{front.url}/metrics", headers={"Authorization": f"Bearer {secrets['metrics']}"}
    ).text
    assert f'slm_generation_tokens_total{{model="{REMOTE}"}}' in metrics
    assert f'slm_time_to_first_token_seconds_count{{model="{REMOTE}"}}' in metrics


def test_upstream_refusals_reach_the_client_as_ours(pair: tuple[Server, dict[str, str]]) -> None:
    front, secrets = pair
    headers = {"Authorization": f"Bearer {secrets['inference']}"}
    r = httpx.post(
        f"{front.url}/v1/chat/completions",
        json={"model": "remote", "messages": [{"role": "user", "content": "x"}], "max_tokens": 100},
        headers=headers,
        timeout=60,
    )  # within the front's limit (8192), beyond the upstream's (64)
    message = r.json()["error"]["message"]
    assert r.status_code == 400 and message.startswith("upstream:") and "SLM_MAX_TOKENS" in message
