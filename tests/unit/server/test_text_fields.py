"""Text where it enters: every request model, every dialect, strange strings.

A lone UTF-16 surrogate is valid JSON (``"\\ud800"``) but not encodable as UTF-8; before the
one validator (server/wire.py) it reached a worker's tokenizer and killed it. Property:
whatever text a field gets (surrogates, NUL, control and bidi characters, the largest code
points), the request is served or refused with a 4xx that names the field; never a 5xx, and
no worker stops. Bodies are sent as ASCII-escaped JSON, as a client would send a surrogate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from slmkit.server.app import create_app
from slmkit.server.wire import RequestBody
from slmkit.store import ModelStore
from tests.ggufs import write_tiny_gguf
from tests.unit.server.fakes import FakeWorkers, make_config

M = "tiny:1"
SPECIAL = ["\ud800", "\udfff", "\udc00", "\x00", "\x1b", "\x7f", "\u202e", "\u2066", "\U0010ffff"]
TEXT = st.text(
    alphabet=st.one_of(st.characters(exclude_categories=()), st.sampled_from(SPECIAL)), max_size=12
)
CHAT = {"model": M, "max_tokens": 3}
SCHEMA = {"type": "object", "properties": {"a": {"type": "string"}}}


def chat(text: str) -> dict[str, Any]:
    return {**CHAT, "messages": [{"role": "user", "content": text}]}


# (route, the field's path in an error, body with the text in that field)
CASES: list[tuple[str, str, Callable[[str], dict[str, Any]]]] = [
    ("/v1/chat/completions", "messages.0.content", chat),
    ("/v1/chat/completions", "messages.0.name",
     lambda t: {**CHAT, "messages": [{"role": "user", "content": "x", "name": t}]}),
    ("/v1/chat/completions", "stop.0", lambda t: {**chat("x"), "stop": [t]}),
    ("/v1/chat/completions", "tools.0.function.name",
     lambda t: {**chat("x"), "tools": [{"type": "function", "function": {"name": t, "parameters": SCHEMA}}]}),
    ("/v1/chat/completions", "tools.0.function.parameters.properties.<key>",
     lambda t: {**chat("x"), "tools": [{"type": "function", "function": {
         "name": "f", "parameters": {"type": "object", "properties": {t: {"type": "string"}}}}}]}),
    ("/v1/chat/completions", "response_format.json_schema.schema.properties.a.pattern",
     lambda t: {**chat("x"), "response_format": {"type": "json_schema", "json_schema": {
         "name": "s", "schema": {**SCHEMA, "properties": {"a": {"type": "string", "pattern": t}}}}}}),
    ("/v1/chat/completions", "user", lambda t: {**chat("x"), "user": t}),
    ("/v1/completions", "prompt", lambda t: {**CHAT, "prompt": t}),
    ("/v1/completions", "suffix", lambda t: {**CHAT, "prompt": "x", "suffix": t}),
    ("/v1/embeddings", "input.0", lambda t: {"model": M, "input": [t]}),
    ("/v1/responses", "input", lambda t: {"model": M, "input": t, "max_output_tokens": 16}),
    ("/v1/responses", "instructions",
     lambda t: {"model": M, "input": "x", "instructions": t, "max_output_tokens": 16}),
    ("/v1/messages", "messages.0.content",
     lambda t: {"model": M, "max_tokens": 3, "messages": [{"role": "user", "content": t}]}),
    ("/v1/messages", "system",
     lambda t: {"model": M, "max_tokens": 3, "system": t, "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/rerank", "documents.0", lambda t: {"model": M, "query": "q", "documents": [t]}),
    ("/v1/rerank", "query", lambda t: {"model": M, "query": t, "documents": ["d"]}),
    ("/tokenize", "prompt", lambda t: {"model": M, "prompt": t}),
    ("/detokenize", "model", lambda t: {"model": t, "tokens": [72]}),
    ("/v1/batches", "metadata.k",
     lambda t: {"input_file_id": "file-" + "0" * 24, "endpoint": "/v1/completions", "metadata": {"k": t}}),
    ("/api/generate", "prompt",
     lambda t: {"model": M, "prompt": t, "stream": False, "options": {"num_predict": 3}}),
    ("/api/generate", "system",
     lambda t: {"model": M, "prompt": "x", "system": t, "stream": False, "options": {"num_predict": 3}}),
    ("/api/generate", "options.stop.0",
     lambda t: {"model": M, "prompt": "x", "stream": False, "options": {"num_predict": 3, "stop": [t]}}),
    ("/api/chat", "messages.0.content",
     lambda t: {"model": M, "messages": [{"role": "user", "content": t}], "stream": False,
                "options": {"num_predict": 3}}),
    ("/api/chat", "keep_alive", lambda t: {"model": M, "messages": [], "keep_alive": t}),
    ("/api/embed", "input", lambda t: {"model": M, "input": t}),
    ("/api/embeddings", "prompt", lambda t: {"model": M, "prompt": t}),
    ("/api/show", "model", lambda t: {"model": t}),
    ("/api/create", "system", lambda t: {"model": "made:1", "from": M, "system": t, "stream": False}),
    ("/api/create", "template", lambda t: {"model": "made:1", "from": M, "template": t, "stream": False}),
    ("/api/copy", "destination", lambda t: {"source": M, "destination": t}),
]  # fmt: skip


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tmp: Path = tmp_path_factory.mktemp("text")
    store = ModelStore(tmp / "models")
    store.import_gguf(M, write_tiny_gguf(tmp / "tiny.gguf"))
    config = make_config(tmp, default_model=M, context_length=256)
    app = create_app(config, store=store, worker_factory=FakeWorkers(n_ctx=256), preload=False)
    with TestClient(app, base_url="http://localhost", raise_server_exceptions=False) as c:
        yield c


def post(client: TestClient, route: str, body: dict[str, Any]) -> Any:
    return client.post(route, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(case=st.sampled_from(CASES), text=TEXT)
def test_any_text_in_any_field_is_served_or_refused_naming_the_field(
    client: TestClient, case: tuple[str, str, Callable[[str], dict[str, Any]]], text: str
) -> None:
    route, field, body = case
    r = post(client, route, body(text))
    assert r.status_code < 500, (route, field, ascii(text), r.text)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in text):
        assert r.status_code == 400, (route, field, ascii(text), r.text)
        assert field in r.text and "not valid Unicode" in r.text, (route, r.text)
    manager = client.app.state.slm.manager  # type: ignore[attr-defined]
    assert manager.restarts == {} and all(m.worker.alive for m in manager.loaded())


@pytest.mark.parametrize(("route", "field", "body"), CASES, ids=[f"{r} {f}" for r, f, _ in CASES])
def test_a_lone_surrogate_is_a_400_naming_the_field(
    client: TestClient, route: str, field: str, body: Callable[[str], dict[str, Any]]
) -> None:
    r = post(client, route, body("a\ud800b"))
    assert r.status_code == 400, r.text
    assert field in r.text, r.text
    if route.startswith("/v1") and route != "/v1/messages":
        assert r.json()["error"]["param"] == field and r.json()["error"]["code"] == "invalid_text"


def test_every_route_body_is_checked_by_the_one_validator(client: TestClient) -> None:
    """The wall: a route whose body model does not derive from RequestBody would let text
    past the check."""
    unchecked = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, APIRoute) and route.body_field is not None:
            model = route.body_field.field_info.annotation
            if not (isinstance(model, type) and issubclass(model, RequestBody)):
                unchecked.append(route.path)
    assert unchecked == []


def test_a_batch_line_with_a_surrogate_is_an_error_line_naming_the_field(client: TestClient) -> None:
    line = {"custom_id": "x", "url": "/v1/chat/completions", "body": chat("a\ud800")}
    data = json.dumps(line).encode() + b"\n"
    f = client.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", data)}).json()
    made = {"input_file_id": f["id"], "endpoint": "/v1/chat/completions"}
    job = client.post("/v1/batches", json=made).json()
    deadline = time.monotonic() + 60
    while (state := client.get(f"/v1/batches/{job['id']}").json())["status"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, state
        time.sleep(0.02)  # a deadline poll of a background job
    assert state["request_counts"] == {"total": 1, "completed": 0, "failed": 1}
    errors = client.get(f"/v1/files/{state['error_file_id']}/content").text
    (row,) = [json.loads(x) for x in errors.splitlines()]
    assert row["response"]["status_code"] == 400
    assert row["response"]["body"]["error"]["param"] == "messages.0.content"
