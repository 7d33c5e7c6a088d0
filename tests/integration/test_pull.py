"""Pulling the real default model from a fake Ollama registry through a real server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import ollama
import pytest

from tests.fakes.registry import FakeRegistry
from tests.integration.conftest import MODEL, Server


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


def test_ollama_client_pull_then_chat(server: Server, registry: FakeRegistry) -> None:
    name = f"{registry.host}/library/smol:pulled"
    client = ollama.Client(host=server.url)
    try:
        events = list(client.pull(name, insecure=True, stream=True))
        assert events[0].status == "pulling manifest" and events[-1].status == "success"
        assert any(e.total and e.completed == e.total for e in events)
        r = client.chat(model=name, messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 4})
        assert r.message.content
        assert "SYSTEM \"\"\"Answer in one word.\"\"\"" in (client.show(name).modelfile or "")
        client.delete(name)
    finally:
        client._client.close()


def test_slm_pull_cli_and_errors(server: Server, registry: FakeRegistry) -> None:
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
