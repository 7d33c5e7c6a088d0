"""Tool-calling helpers: descriptions, the call schema, parsing answers (tools.py)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from slmkit.answer import tools as t
from slmkit.errors import InvalidRequest

WEATHER = t.Tool(
    "get_weather",
    "Weather",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
TIME = t.Tool("get_time", "Time", {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}})


def test_call_schema_accepts_only_calls_to_the_allowed_tools_with_valid_arguments() -> None:
    schema = json.loads(t.call_schema([WEATHER, TIME], t.Choice("required")))
    jsonschema.validate({"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}, schema)
    for bad in (
        {"tool_calls": []},
        {"tool_calls": [{"name": "get_weather", "arguments": {}}]},
        {"tool_calls": [{"name": "nope", "arguments": {}}]},
        {"tool_calls": [{"name": "get_time", "arguments": {"zone": "PST"}}]},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    named = json.loads(t.call_schema([WEATHER, TIME], t.Choice("required", name="get_time", parallel=False)))
    assert named["properties"]["tool_calls"]["maxItems"] == 1
    assert named["properties"]["tool_calls"]["items"]["properties"]["name"] == {"const": "get_time"}


def test_parse_calls_in_every_accepted_form() -> None:
    plain = t.parse_calls(
        '{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Rome"}}]}', [WEATHER]
    )
    assert plain is not None and plain[0].name == "get_weather" and plain[0].arguments == {"city": "Rome"}
    tagged = t.parse_calls(
        '<tool_call>{"name": "get_time", "arguments": "{\\"zone\\": \\"UTC\\"}"}</tool_call>', [TIME]
    )
    assert tagged is not None and tagged[0].arguments == {"zone": "UTC"}
    bare = t.parse_calls(' {"name": "get_weather", "arguments": {"city": "X"}} ', [WEATHER])
    assert bare is not None and bare[0].id.startswith("call_")
    mistral = t.parse_calls(
        '[TOOL_CALLS] [{"name": "get_weather", "arguments": {"city": "Nice"}}]', [WEATHER]
    )
    assert mistral is not None and mistral[0].arguments == {"city": "Nice"}
    newer = t.parse_calls(
        '[TOOL_CALLS]get_weather[ARGS]{"city": "Lyon"}[TOOL_CALLS]get_time[ARGS]{}', [WEATHER, TIME]
    )
    assert newer is not None and [c.name for c in newer] == ["get_weather", "get_time"]
    listed = t.parse_calls('[{"name": "get_time", "parameters": {"zone": "CET"}}]', [TIME])
    assert listed is not None and listed[0].arguments == {"zone": "CET"}
    for text in (
        "[1, 2]",
        "[TOOL_CALLS]x[ARGS]{",
        "It is sunny.",
        '{"tool_calls": [{"name": "other", "arguments": {}}]}',
        "{not json",
        '{"a": 1}',
    ):
        assert t.parse_calls(text, [WEATHER]) is None, text


def test_conversation_rendering_and_checks() -> None:
    msgs = t.with_tools(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
        [WEATHER],
        t.Choice("auto"),
    )
    assert (
        msgs[0]["content"].startswith("Be brief.") and "get_weather" in msgs[0]["content"] and len(msgs) == 2
    )
    assert t.with_tools([{"role": "user", "content": "hi"}], [WEATHER], t.Choice("none")) == [
        {"role": "user", "content": "hi"}
    ]
    assert json.loads(t.render_calls([("get_weather", {"city": "A"})])) == {
        "tool_calls": [{"name": "get_weather", "arguments": {"city": "A"}}]
    }
    assert "Result of get_weather (call c1)" in t.render_result("get_weather", "c1", "21 C")["content"]
    with pytest.raises(InvalidRequest, match="unique"):
        t.check_tools([WEATHER, WEATHER], t.Choice("auto"))
    with pytest.raises(InvalidRequest, match="no tool named"):
        t.check_tools([WEATHER], t.Choice("required", name="x"))
    with pytest.raises(InvalidRequest, match="name"):
        t.tool("bad name!", "", None, "tools.0.function")
    with pytest.raises(InvalidRequest, match="patternProperties"):
        t.call_schema([t.Tool("f", "", {"type": "object", "patternProperties": {}})], t.Choice("required"))


TOOL_TEMPLATE = (
    "{% if tools %}T:{% for t in tools %}{{ t.function.name }}{% endfor %}|{% endif %}"
    "{% for m in messages %}{{ m.role[0] }}:"
    "{% if m.tool_calls %}{% for c in m.tool_calls %}C {{ c.function.arguments | tojson }}{% endfor %}"
    "{% else %}{{ m.content }}{% endif %}|{% endfor %}"
)


def test_templates_that_render_tools_get_them_structured(tmp_path: object) -> None:
    from fastapi.testclient import TestClient

    from slmkit.names import ModelName
    from slmkit.server.app import create_app
    from slmkit.store import ModelStore
    from slmkit.store.gguf_info import read_info
    from tests.ggufs import write_tiny_gguf
    from tests.unit.server.fakes import FakeWorker, make_config

    assert t.supports_tools(TOOL_TEMPLATE) and not t.supports_tools("{{ messages }}")
    store = ModelStore(tmp_path / "models")  # type: ignore[operator]
    base = store.import_gguf("tiny:1", write_tiny_gguf(tmp_path / "tiny.gguf"))  # type: ignore[operator]
    store.create(
        ModelName.parse("tooly:1"),
        base.manifest.model_layer.digest,
        read_info(base.model_path),
        template=TOOL_TEMPLATE,
    )
    config = make_config(tmp_path, default_model="tiny:1", max_body_bytes=8192, context_length=4096)
    tools = [{"type": "function", "function": {"name": "w", "parameters": {"type": "object"}}}]
    messages = [
        {"role": "user", "content": "w?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "c1",
                    "type": "function",
                    "function": {"name": "w", "arguments": '{"c": 1}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    app = create_app(config, store=store, worker_factory=FakeWorker, preload=False)
    with TestClient(app, base_url="http://localhost") as client:
        r = client.post(
            "/v1/chat/completions",
            json={"model": "tooly:1", "messages": messages, "tools": tools, "max_tokens": 2},
        )
        assert r.status_code == 200, r.text
        (loaded,) = client.app.state.slm.manager.loaded()  # type: ignore[attr-defined]
        prompt = loaded.worker.backend.tokenized[-1]
    assert prompt == 'T:w|u:w?|a:C {"c": 1}|t:ok|'  # tools, the call and the result, all structured


def test_a_repeated_call_is_returned_once() -> None:
    text = json.dumps(
        {
            "tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
                {"name": "get_weather", "arguments": {"city": "Rome"}},
                {"name": "get_weather", "arguments": {"city": "Oslo"}},
            ]
        }
    )
    calls = t.calls_in(text, [WEATHER], t.Choice("required"))
    assert calls is not None and [c.arguments["city"] for c in calls] == ["Oslo", "Rome"]


def test_the_parallel_call_bound_never_exceeds_the_token_budget() -> None:
    """Our own maxItems must not turn a small max_tokens into a refusal about a bound the
    caller never wrote."""
    parallel = t.Choice("required")
    assert json.loads(t.call_schema([WEATHER], parallel))["properties"]["tool_calls"]["maxItems"] == 4
    small = t.call_schema([WEATHER], parallel, max_tokens=3)
    assert json.loads(small)["properties"]["tool_calls"]["maxItems"] == 3
    from slmkit.answer.schema import fit_budget

    assert fit_budget(small, 3) == small  # nothing to lower


def test_the_watch_finds_the_first_repeated_call_however_the_text_is_cut() -> None:
    calls = [
        {"name": "get_weather", "arguments": {"city": 'Os"lo}{'}},  # quotes and braces inside strings
        {"name": "get_weather", "arguments": {"city": "Rome", "days": [{"d": 1}]}},
        {"name": "get_weather", "arguments": {"days": [{"d": 1}], "city": "Rome"}},  # same, other order
        {"name": "get_weather", "arguments": {"city": "Paris"}},
    ]
    text = json.dumps({"tool_calls": calls})
    repeat_ends = text.index(json.dumps(calls[2])) + len(json.dumps(calls[2]))
    for size in (1, 3, 7, len(text)):
        watch = t.RepeatWatch()
        fed = 0
        seen = False
        while fed < len(text) and not seen:
            seen = watch.feed(text[fed : fed + size])
            fed += size
        assert seen and fed >= repeat_ends  # not before the repeat is whole
        assert [c["arguments"]["city"] for c in json.loads(watch.closed())["tool_calls"]] == [
            'Os"lo}{',
            "Rome",
        ]
    other = t.RepeatWatch()  # not the call list: never triggers
    assert not other.feed('{"name": "f", "arguments": {"a": [{"x": 1}, {"x": 1}, {"x": 1}]}}')
    assert other.closed().startswith('{"name"')


def test_a_required_parallel_call_list_that_repeats_ends_the_answer_on_every_dialect(
    client: object, workers: object
) -> None:
    from fastapi.testclient import TestClient

    from tests.unit.server.fakes import FakeWorkers

    assert isinstance(client, TestClient) and isinstance(workers, FakeWorkers)
    call = {"name": "get_weather", "arguments": {"city": "Oslo"}}
    script = json.dumps({"tool_calls": [call] * 4}).encode()
    workers.script, workers.n_ctx = script, 4096
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER.parameters}}
    ask = [{"role": "user", "content": "Weather in Oslo?"}]
    r = client.post(
        "/v1/chat/completions",
        json={"model": "tiny:1", "messages": ask, "tools": [tool], "tool_choice": "required"},
    ).json()
    (choice,) = r["choices"]
    assert choice["finish_reason"] == "tool_calls" and len(choice["message"]["tool_calls"]) == 1
    # the worker stopped at the first repeat: the third and fourth copies were never generated
    assert r["usage"]["completion_tokens"] < len(script) * 3 // 4
    ollama = client.post(
        "/api/chat",
        json={"model": "tiny:1", "messages": ask, "tools": [tool], "stream": False, "options": {}},
    )
    assert ollama.status_code == 200  # auto on Ollama: parsed after the fact, duplicates dropped
    assert len(ollama.json()["message"]["tool_calls"]) == 1
    with client.stream(
        "POST",
        "/v1/responses",
        json={
            "model": "tiny:1",
            "input": "Weather in Oslo?",
            "tools": [{"type": "function", **tool["function"]}],
            "tool_choice": "required",
            "stream": True,
        },
    ) as s:
        events = [json.loads(line[6:]) for line in s.iter_lines() if line.startswith("data: ")]
    final = events[-1]["response"]
    assert final["status"] == "completed" and [i["type"] for i in final["output"]] == ["function_call"]
    assert final["usage"]["output_tokens"] < len(script) * 3 // 4
