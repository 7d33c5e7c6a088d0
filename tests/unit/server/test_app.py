from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from slmkit.server.app import create_app
from slmkit.store import ModelStore
from tests.unit.server.fakes import FakeWorker, make_config


def test_root_and_health(client: TestClient) -> None:
    assert client.get("/").text == "slmkit is running"
    assert client.head("/").status_code == 200
    page = client.get("/", headers={"Accept": "text/html,application/xhtml+xml"})  # a browser
    assert 'href="/ui/"' in page.text and "default-src 'none'" in page.headers["content-security-policy"]
    assert client.get("/health").json() == {"status": "ok"}


def test_ready_turns_green_after_default_model_loads(client: TestClient) -> None:
    assert client.get("/ready").status_code == 503
    client.post("/api/generate", json={"model": "tiny:1"})
    assert client.get("/ready").json()["status"] == "ready"


def test_body_limit(client: TestClient) -> None:
    big = {"model": "tiny:1", "messages": [{"role": "user", "content": "x" * 5000}]}
    r = client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and "SLM_MAX_BODY_BYTES" in r.json()["error"]["message"]
    r = client.post("/api/chat", json=big)
    assert r.status_code == 413 and "limit" in r.json()["error"]


def test_prompt_too_long_is_400(client: TestClient) -> None:
    r = client.post("/api/generate", json={"model": "tiny:1", "prompt": "x" * 100, "stream": False})
    assert r.status_code == 400 and "context window" in r.json()["error"]


def test_load_failure_is_clear_and_other_models_keep_serving(tmp_path: Path, store: ModelStore) -> None:
    from tests.ggufs import write_tiny_gguf

    broken = write_tiny_gguf(tmp_path / "broken.gguf", template="broken model")
    store.import_gguf("broken", broken)
    app = create_app(
        make_config(tmp_path, default_model="tiny:1"),
        store=store,
        worker_factory=FakeWorker,
        preload=False,
    )
    with TestClient(app, base_url="http://localhost") as c:
        r = c.post("/api/chat", json={"model": "broken", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 500
        assert "could not load" in r.json()["error"]
        r = c.post(
            "/api/chat",
            json={
                "model": "tiny:1",
                "messages": [{"role": "user", "content": "x"}],
                "stream": False,
            },
        )
        assert r.status_code == 200


def test_no_paths_or_traces_in_errors(client: TestClient, tmp_path: Path) -> None:
    bodies = [
        client.post("/api/chat", json={"model": "nope"}).text,
        client.post("/api/show", json={"model": "../x"}).text,
        client.post("/v1/chat/completions", json={"model": "x"}).text,
        client.post("/api/generate", content=b"\xff\xfe").text,
        client.request("DELETE", "/api/delete", json={}).text,
    ]
    for body in bodies:
        assert str(tmp_path) not in body
        assert "Traceback" not in body
        assert not re.search(r"/(root|home|tmp)/", body), body


def test_failure_mid_stream_ends_each_dialect_cleanly(tmp_path: Path, store: ModelStore) -> None:
    import json

    from tests.ggufs import write_tiny_gguf

    store.import_gguf("failing", write_tiny_gguf(tmp_path / "f.gguf", template="failing model"))
    app = create_app(make_config(tmp_path), store=store, worker_factory=FakeWorker, preload=False)
    messages = [{"role": "user", "content": "x"}]
    with TestClient(app, base_url="http://localhost") as c:
        r = c.post("/api/chat", json={"model": "failing", "messages": messages})
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert lines[-1] == {"error": "llama.cpp failed to decode: simulated"}
        assert "".join(x["message"]["content"] for x in lines[:-1]) == "Hel"
        r = c.post("/v1/chat/completions", json={"model": "failing", "messages": messages, "stream": True})
        events = [line[6:] for line in r.text.splitlines() if line.startswith("data: ")]
        assert events[-1] == "[DONE]"
        assert json.loads(events[-2])["error"]["message"] == "llama.cpp failed to decode: simulated"
        r = c.post("/v1/chat/completions", json={"model": "failing", "messages": messages})
        assert r.status_code == 500 and "simulated" in r.json()["error"]["message"]


def test_request_timeout_aborts_with_504(tmp_path: Path, store: ModelStore) -> None:
    from tests.ggufs import write_tiny_gguf

    store.import_gguf("slow", write_tiny_gguf(tmp_path / "s.gguf", template="slow model"))
    app = create_app(
        make_config(tmp_path, request_timeout=0.2), store=store, worker_factory=FakeWorker, preload=False
    )
    with TestClient(app, base_url="http://localhost") as c:
        r = c.post(
            "/api/chat",
            json={"model": "slow", "messages": [{"role": "user", "content": "x"}], "stream": False},
        )
        assert r.status_code == 504 and "SLM_REQUEST_TIMEOUT" in r.json()["error"]
        r = c.post(
            "/api/chat",
            json={"model": "tiny:1", "messages": [{"role": "user", "content": "x"}], "stream": False},
        )
        assert r.status_code == 200


def test_draining_refuses_new_work_but_answers_health(client: TestClient) -> None:
    client.app.state.slm.draining = True  # type: ignore[attr-defined]
    r = client.post("/api/chat", json={"model": "tiny:1", "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 503 and r.headers["retry-after"] == "1"
    assert client.get("/health").status_code == 200
    assert client.get("/ready").json()["status"] == "draining"
