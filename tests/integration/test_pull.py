"""Pulling the real default model from a fake Ollama registry through a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import ollama
import pytest

from slmkit.store import ModelStore
from tests.fakes.registry import FakeRegistry
from tests.integration.conftest import MODEL, Server


@pytest.fixture(scope="module")
def private_server(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server that may pull from registries on private and loopback addresses (the fake
    registry listens on 127.0.0.1); the default server refuses them."""
    from tests.integration.conftest import start_server, stop_server

    s = start_server(models_dir, tmp_path_factory.mktemp("logs") / "pull.log", SLM_PULL_PRIVATE="1")
    yield s
    stop_server(s)


@pytest.fixture(scope="module")
def registry(server: Server) -> Iterator[FakeRegistry]:
    reg = FakeRegistry(require_auth=True)
    gguf = server.store.get(MODEL).model_path.read_bytes()
    reg.add_model(
        "library/smol:pulled", gguf, [("application/vnd.ollama.image.system", b"Answer in one word.")]
    )
    reg.start()
    yield reg
    reg.stop()


def test_ollama_client_pull_then_chat(private_server: Server, registry: FakeRegistry) -> None:
    server = private_server
    name = f"{registry.host}/library/smol:pulled"
    client = ollama.Client(host=server.url)
    try:
        events = list(client.pull(name, insecure=True, stream=True))
        assert events[0].status == "pulling manifest" and events[-1].status == "success"
        assert any(e.total and e.completed == e.total for e in events)
        r = client.chat(model=name, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 4})
        assert r.message.content
        assert 'SYSTEM """Answer in one word."""' in (client.show(name).modelfile or "")
        client.delete(name)
    finally:
        client._client.close()


def test_slm_pull_cli_and_errors(private_server: Server, registry: FakeRegistry) -> None:
    server = private_server
    name = f"{registry.host}/library/smol:pulled"
    out = server.cli("pull", name, "--insecure", "--json")
    assert '"success"' in out.stdout
    assert name in server.cli("list").stdout
    missing = server.cli("pull", f"{registry.host}/library/nope:1", "--insecure", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr
    r = httpx.post(
        f"{server.url}/api/pull",
        json={"model": f"{registry.host}/library/nope:1", "insecure": True, "stream": False},
        timeout=60,
    )
    assert r.status_code == 502 and "not found" in r.json()["error"]
    server.cli("rm", name)


def test_hugging_face_pull_through_the_server(models_dir: Path, tmp_path: Path) -> None:
    from tests.fakes.hub import FakeHub
    from tests.integration.conftest import start_server, stop_server

    gguf = Path(ModelStore(models_dir).get(MODEL).model_path).read_bytes()
    hub = FakeHub(files={"org/SmolLM2-GGUF": {"SmolLM2-Q4_1.gguf": gguf, "SmolLM2-Q8_0.gguf": b"x" * 64}})
    hub.start()
    server = start_server(models_dir, tmp_path / "server.log", HF_ENDPOINT=hub.url, SLM_PULL_PRIVATE="1")
    try:
        server.cli("pull", "hf.co/org/SmolLM2-GGUF:Q4_1")
        name = "hf.co/org/SmolLM2-GGUF:Q4_1"
        r = httpx.post(
            f"{server.url}/api/generate",
            json={"model": name, "prompt": "Hi", "stream": False, "options": {"num_predict": 3}},
            timeout=60,
        )
        assert r.status_code == 200 and r.json()["eval_count"] == 3
        assert not [p for _, p, _ in hub.requests if "Q8_0" in p and "/resolve/" in p]
        server.cli("rm", name)
    finally:
        stop_server(server)
        hub.stop()


def test_the_default_server_refuses_pulls_from_internal_addresses(
    server: Server, registry: FakeRegistry
) -> None:
    """No SLM_PULL_PRIVATE: a pull naming a loopback registry (an open port) and one naming a
    closed port get the same refusal, before any connection."""
    seen = len(registry.requests)
    answers = []
    for ref in (f"{registry.host}/library/smol:pulled", "127.0.0.1:9/library/smol:pulled"):
        r = httpx.post(
            f"{server.url}/api/pull", json={"model": ref, "insecure": True, "stream": False}, timeout=60
        )
        answers.append((r.status_code, r.json()["error"].replace(ref.partition("/")[0], "HOST")))
    assert answers[0] == answers[1] and answers[0][0] == 502 and "loopback" in answers[0][1]
    assert len(registry.requests) == seen
