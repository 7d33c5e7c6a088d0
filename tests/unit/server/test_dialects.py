"""One model profile, one answer pipeline: every dialect gives the engine the same request
and reports reasoning and tool calls from the same events (no model, no network)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slmkit.answer import parameters as params
from slmkit.answer.generation import Answer, AnswerEvent, Done, Text, Thinking, ToolCalls
from slmkit.answer.profile import load_profile
from slmkit.local import LocalModel
from slmkit.names import ModelName
from slmkit.pipe import Call, GenerationStats, SamplingParams
from slmkit.server.anthropic import protocol as anthropic
from slmkit.server.app import create_app
from slmkit.server.ollama import protocol as ollama
from slmkit.server.openai import protocol as openai
from slmkit.server.responses import protocol as responses
from slmkit.store import ModelStore
from slmkit.store.gguf_info import read_info
from tests.unit.answer import test_parameters as table_test
from tests.unit.answer.test_parameters import MODEL_VALUE
from tests.unit.engine.fakes import FakeBackend
from tests.unit.server.fakes import FakeWorker, FakeWorkers, make_config

# Request values each dialect can carry (Anthropic's temperature stops at 1).
REQUEST_VALUE: dict[str, Any] = {**table_test.REQUEST_VALUE, "temperature": 0.9}
SYSTEM, HISTORY = (
    "You are terse.",
    [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
)
HI = [{"role": "user", "content": "hi"}]
OPENAI_FIELDS = {name: field for field, name in openai.OPTION_FIELDS.items()} | {"num_predict": "max_tokens"}


def _wire(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def openai_chat(values: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    if set(values) - set(OPENAI_FIELDS):
        return None
    body = {"model": "tuned:1", "messages": HI} | {OPENAI_FIELDS[k]: _wire(v) for k, v in values.items()}
    return "/v1/chat/completions", body


def openai_completion(values: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    found = openai_chat(values)
    if found is None:
        return None
    body = {k: v for k, v in found[1].items() if k != "messages"} | {"prompt": "hi"}
    return "/v1/completions", body


def responses_api(values: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    names = {"temperature": "temperature", "top_p": "top_p", "num_predict": "max_output_tokens"}
    if set(values) - set(names):
        return None
    return "/v1/responses", {"model": "tuned:1", "input": "hi"} | {names[k]: v for k, v in values.items()}


def anthropic_messages(values: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    names = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "stop": "stop_sequences"}
    names["num_predict"] = "max_tokens"
    if set(values) - set(names):
        return None
    values = {"num_predict": MODEL_VALUE["num_predict"]} | values  # max_tokens is required there
    body = {"model": "tuned:1", "messages": HI} | {names[k]: _wire(v) for k, v in values.items()}
    return "/v1/messages", body


def ollama_chat(values: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    options = {k: _wire(v) for k, v in values.items()}
    return "/api/chat", {"model": "tuned:1", "messages": HI, "stream": False, "options": options}


def ollama_generate(values: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    options = {k: _wire(v) for k, v in values.items()}
    return "/api/generate", {"model": "tuned:1", "prompt": "hi", "stream": False, "options": options}


Dialect = Callable[[dict[str, Any]], tuple[str, dict[str, Any]] | None]
DIALECTS: dict[str, Dialect] = {
    "openai-chat": openai_chat,
    "openai-completions": openai_completion,
    "responses": responses_api,
    "anthropic": anthropic_messages,
    "ollama-chat": ollama_chat,
    "ollama-generate": ollama_generate,
}
CHATS = ("openai-chat", "responses", "anthropic", "ollama-chat")


def store_with(tmp_path: Path, name: str, **fields: Any) -> ModelStore:
    """A store with tiny:1 and ``name`` made from it with ``fields`` (system, params, ...)."""
    from tests.ggufs import write_tiny_gguf

    store = ModelStore(tmp_path / "models")
    base = store.import_gguf("tiny:1", write_tiny_gguf(tmp_path / "tiny.gguf"))
    store.create(
        ModelName.parse(name), base.manifest.model_layer.digest, read_info(base.model_path), **fields
    )
    return store


@pytest.fixture
def tuned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, ModelStore]]:
    """A model with every sampling PARAMETER, a SYSTEM prompt and MESSAGE history."""
    store = store_with(tmp_path, "tuned:1", system=SYSTEM, messages=HISTORY, params=params.layer(MODEL_VALUE))
    config = make_config(tmp_path, default_model="tiny:1", max_body_bytes=1 << 16)
    app = create_app(config, store=store, worker_factory=FakeWorkers(n_ctx=1024), preload=False)
    with TestClient(app, base_url="http://localhost") as client:
        yield client, store


def _received(client: TestClient) -> tuple[SamplingParams, str]:
    """The sampling parameters and prompt text the engine got for the last request."""
    (loaded,) = client.app.state.slm.manager.loaded()  # type: ignore[attr-defined]
    backend = loaded.worker.backend
    return list(backend.sampling.values())[-1], backend.tokenized[-1]


def _send(client: TestClient, dialect: str, values: dict[str, Any]) -> tuple[SamplingParams, str]:
    found = DIALECTS[dialect](values)
    assert found is not None
    r = client.post(found[0], json=found[1])
    assert r.status_code == 200, r.text
    return _received(client)


def _local(store: ModelStore, tmp_path: Path, **options: Any) -> tuple[SamplingParams, str]:
    backend = FakeBackend(b"Hello world", n_ctx=1024)
    model = LocalModel(load_profile(store.get("tuned:1")), backend, make_config(tmp_path))
    if "num_predict" in options:  # slmkit.load also takes OpenAI's name for it
        options["max_tokens"] = options.pop("num_predict")
    model.chat(HI, **{k: _wire(v) for k, v in options.items()})
    return list(backend.sampling.values())[-1], backend.tokenized[-1]


def _fields(s: SamplingParams) -> dict[str, Any]:
    return {p.name: getattr(s, p.field or "") for p in params.SAMPLING}


def test_model_parameters_reach_the_engine_the_same_way_from_every_dialect(
    tuned: tuple[TestClient, ModelStore], tmp_path: Path
) -> None:
    client, store = tuned
    expected = dict(MODEL_VALUE)
    seen = {d: _send(client, d, {}) for d in DIALECTS}
    seen["slmkit.load"] = _local(store, tmp_path)
    for dialect, (sampling, _) in seen.items():
        assert _fields(sampling) == expected, dialect
    # and the chat dialects render the same conversation: SYSTEM, then MESSAGE history, then "hi"
    prompts = {seen[d][1] for d in [*CHATS, "slmkit.load"]}
    assert len(prompts) == 1
    (prompt,) = prompts
    assert prompt.index(SYSTEM) < prompt.index("2+2?") < prompt.index("hi")


# every (dialect, parameter) pair the dialect has a field for; slmkit.load takes them all
OVERRIDES = [
    (dialect, name)
    for dialect in [*DIALECTS, "slmkit.load"]
    for name in sorted(REQUEST_VALUE)
    if dialect == "slmkit.load" or DIALECTS[dialect]({name: REQUEST_VALUE[name]}) is not None
]


@pytest.mark.parametrize(("dialect", "name"), OVERRIDES)
def test_request_values_override_model_parameters(
    tuned: tuple[TestClient, ModelStore], tmp_path: Path, dialect: str, name: str
) -> None:
    client, store = tuned
    values = {name: REQUEST_VALUE[name]}
    if dialect == "slmkit.load":
        sampling, _ = _local(store, tmp_path, **values)
    else:
        sampling, _ = _send(client, dialect, values)
    assert _fields(sampling) == {**MODEL_VALUE, name: REQUEST_VALUE[name]}


def test_a_request_above_the_cap_is_refused_in_every_dialect(tuned: tuple[TestClient, ModelStore]) -> None:
    client, _ = tuned
    for dialect, build in DIALECTS.items():
        found = build({"num_predict": 10**6})
        assert found is not None
        r = client.post(found[0], json=found[1])
        assert r.status_code == 400 and "SLM_MAX_TOKENS" in r.text, dialect


def test_no_limit_anywhere_stops_at_the_default_length(tmp_path: Path) -> None:
    from tests.ggufs import write_tiny_gguf

    store = ModelStore(tmp_path / "models")
    store.import_gguf("tiny:1", write_tiny_gguf(tmp_path / "tiny.gguf"))
    config = make_config(tmp_path, default_model="tiny:1", default_max_tokens=3)
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost") as client:
        r = client.post("/v1/chat/completions", json={"model": "tiny:1", "messages": HI})
        assert r.json()["usage"]["completion_tokens"] == 3
        assert r.json()["choices"][0]["finish_reason"] == "length"


# -- the same answer events through every dialect's mapping ----------------------------------
STATS = GenerationStats(4, 2, 0.1, 0.2)
CALL = Call("call_abc", "weather", {"city": "Oslo"})
THOUGHT = [Thinking("Let me "), Thinking("think."), Text("Sunny."), Done("m:1", "stop", STATS)]
CALLED = [Thinking("Need data."), ToolCalls((CALL,)), Done("m:1", "stop", STATS, tool_calls=True)]


def test_ollama_maps_reasoning_and_calls() -> None:
    chunks = [ollama.to_ollama_chunk(e, "m:1", chat=True, logprobs=False) for e in THOUGHT]
    assert "".join(c["message"].get("thinking", "") for c in chunks) == "Let me think."
    assert "".join(c["message"]["content"] for c in chunks) == "Sunny." and chunks[-1]["done"]
    chunks = [ollama.to_ollama_chunk(e, "m:1", chat=True, logprobs=False) for e in CALLED]
    assert chunks[1]["message"]["tool_calls"] == [
        {"function": {"name": "weather", "arguments": {"city": "Oslo"}}}
    ]
    generate = [ollama.to_ollama_chunk(e, "m:1", chat=False, logprobs=False) for e in THOUGHT]
    assert generate[0]["thinking"] == "Let me " and generate[2]["response"] == "Sunny."
    whole = ollama.to_ollama_answer(Answer("", "Need data.", (CALL,), CALLED[-1]), chat=True, logprobs=False)  # type: ignore[arg-type]
    assert whole["message"]["thinking"] == "Need data." and whole["message"]["tool_calls"]


def test_openai_maps_reasoning_and_calls() -> None:
    out = openai.Responder(True, "r", "m:1")
    chunks = [c for e in THOUGHT for c in out.event(e)]
    assert "".join(c["choices"][0]["delta"].get("reasoning_content", "") for c in chunks) == "Let me think."
    assert chunks[2]["choices"][0]["delta"] == {"content": "Sunny."}
    chunks = [c for e in CALLED for c in out.event(e)]
    (call,) = chunks[1]["choices"][0]["delta"]["tool_calls"]
    assert call["function"] == {"name": "weather", "arguments": '{"city": "Oslo"}'} and call["index"] == 0
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    full = out.full([Answer("", "Need data.", (CALL,), CALLED[-1])])  # type: ignore[list-item]
    message = full["choices"][0]["message"]
    assert message["reasoning_content"] == "Need data." and message["content"] is None
    assert full["choices"][0]["finish_reason"] == "tool_calls"


def test_anthropic_maps_reasoning_and_calls() -> None:
    def blocks(events: list[AnswerEvent]) -> list[tuple[str, dict[str, Any]]]:
        stream = anthropic.MessageStream("r", "m:1")
        return [item for e in events for item in stream.event(e)]

    thought = blocks(THOUGHT)
    starts = [d["content_block"]["type"] for k, d in thought if k == "content_block_start"]
    assert starts == ["thinking", "text"]
    deltas = [d["delta"] for k, d in thought if k == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == "Let me think."
    assert "".join(d.get("text", "") for d in deltas) == "Sunny."
    called = blocks(CALLED)
    assert [d["content_block"]["type"] for k, d in called if k == "content_block_start"] == [
        "thinking",
        "tool_use",
    ]
    assert [d["index"] for k, d in called if k == "content_block_stop"] == [0, 1]
    (end,) = [d for k, d in called if k == "message_delta"]
    assert end["delta"]["stop_reason"] == "tool_use"
    message = anthropic.message("r", Answer("", "Need data.", (CALL,), CALLED[-1]))  # type: ignore[arg-type]
    assert [b["type"] for b in message["content"]] == ["thinking", "tool_use"]
    assert message["content"][1]["input"] == {"city": "Oslo"}


def test_responses_maps_reasoning() -> None:
    req = responses.ResponsesRequest(model="m:1", input="hi")
    stream = responses.ResponseStream(req, "r", 0)
    events = [item for e in THOUGHT for item in stream.event(e)]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "response.output_item.added" and events[0]["item"]["type"] == "reasoning"
    assert (
        "".join(e["delta"] for e in events if e["type"] == "response.reasoning_text.delta") == "Let me think."
    )
    final = events[-1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["content"] == [{"type": "reasoning_text", "text": "Let me think."}]
    assert [e["output_index"] for e in events if e["type"] == "response.output_text.delta"] == [1]
    whole = responses.to_response(req, "r", 0, Answer("Sunny.", "Let me think.", (), THOUGHT[-1]))  # type: ignore[arg-type]
    assert [item["type"] for item in whole["output"]] == ["reasoning", "message"]


THINKING_TEMPLATE = (
    "{% if enable_thinking %}<think>{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}"
)


def test_a_thinking_model_reasons_in_every_dialect(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same scripted answer, through the server, each dialect in its own shape."""
    store = store_with(tmp_path, "thinker:1", template=THINKING_TEMPLATE)
    workers = FakeWorkers(script=b"<think>hmm</think>Hi")
    app = create_app(make_config(tmp_path, default_model="tiny:1"), store=store, worker_factory=workers)
    m = {"model": "thinker:1"}
    with TestClient(app, base_url="http://localhost") as client:
        r = client.post("/api/chat", json=m | {"messages": HI, "stream": False}).json()
        assert (r["message"]["thinking"], r["message"]["content"]) == ("hmm", "Hi")
        r = client.post("/v1/chat/completions", json=m | {"messages": HI}).json()
        message = r["choices"][0]["message"]
        assert (message["reasoning_content"], message["content"]) == ("hmm", "Hi")
        r = client.post("/v1/messages", json=m | {"messages": HI, "max_tokens": 20}).json()
        assert [(b["type"], b.get("thinking") or b.get("text")) for b in r["content"]] == [
            ("thinking", "hmm"),
            ("text", "Hi"),
        ]
        r = client.post("/v1/responses", json=m | {"input": "hi"}).json()
        assert r["output"][0]["content"][0]["text"] == "hmm" and r["output"][1]["content"][0]["text"] == "Hi"
        lines = client.post("/v1/messages", json=m | {"messages": HI, "max_tokens": 20, "stream": True}).text
        data = [json.loads(x[6:]) for x in lines.splitlines() if x.startswith("data: ")]
        first = next(d for d in data if d["type"] == "content_block_delta")
        assert first["delta"]["type"] == "thinking_delta"
        # thinking turned off: no split, and the template is told so
        r = client.post("/api/chat", json=m | {"messages": HI, "stream": False, "think": False}).json()
        assert r["message"]["content"] == "<think>hmm</think>Hi" and "thinking" not in r["message"]
