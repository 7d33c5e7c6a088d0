"""Function tools on the Responses API: the request's tools, tool_choice and input items
(function_call, function_call_output, reasoning) become the engine request every dialect
builds; tool calls come back as function_call items, whole and streamed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slmkit.answer.generation import Answer, Done, Text, Thinking, ToolCalls
from slmkit.errors import InvalidRequest
from slmkit.pipe import Call, GenerationStats
from slmkit.server.responses import protocol as responses
from tests.unit.server.fakes import FakeWorkers

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
STATS = GenerationStats(4, 2, 0.1, 0.2)
CALL = Call("call_abc", "get_weather", {"city": "Oslo"})
DONE = Done("m:1", "stop", STATS, tool_calls=True)


def request(**fields: Any) -> responses.ResponsesRequest:
    return responses.ResponsesRequest.model_validate({"model": "m:1", "input": "hi", **fields})


def test_tools_and_tool_choice_become_the_engine_request() -> None:
    engine = request(tools=[WEATHER], tool_choice="required", parallel_tool_calls=False).engine_request("r")
    (tool,) = engine.tools
    assert (tool.name, tool.description) == ("get_weather", "Weather in a city")
    assert tool.parameters["required"] == ["city"]
    assert engine.tool_choice.mode == "required" and not engine.tool_choice.parallel
    named = request(tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"})
    assert named.engine_request("r").tool_choice.name == "get_weather"
    assert request().engine_request("r").tool_choice.mode == "none"
    assert request(tools=[WEATHER]).engine_request("r").tool_choice.mode == "auto"


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools.0"),
        ({"tools": [{**WEATHER, "name": "bad name!"}]}, "tools.0.function.name"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "name": "other"}}, "tool_choice"),
        ({"tools": [WEATHER], "tool_choice": {"type": "file_search"}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"input": [{"type": "function_call", "name": "f"}]}, "input.0"),
        (
            {"input": [{"type": "function_call", "name": "f", "call_id": "c", "arguments": "{x"}]},
            "input.0.arguments",
        ),
        (
            {"input": [{"type": "function_call", "name": "f", "call_id": "c", "arguments": "[1]"}]},
            "input.0.arguments",
        ),
        ({"input": [{"type": "function_call_output", "output": "x"}]}, "input.0.call_id"),
        ({"input": [{"type": "computer_call"}]}, "input.0"),
    ],
)
def test_bad_tools_and_items_are_refused_naming_the_field(fields: dict[str, Any], where: str) -> None:
    with pytest.raises(InvalidRequest, match=where.replace(".", r"\.")):
        request(**fields).engine_request("r")


def test_a_tool_round_trip_in_input_items_becomes_one_call_turn_and_its_results() -> None:
    items = [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": '{"city": "Oslo"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": '{"city": "Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "Sunny"},
        {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "Rain"}]},
    ]
    messages = request(input=items, tools=[WEATHER]).messages()
    # results carry both forms: a user turn for any template, the tool turn for native ones
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "user"]
    assert [(m["_tool"]["name"], m["_tool"]["tool_call_id"]) for m in messages[2:]] == [
        ("get_weather", "c1"),
        ("get_weather", "c2"),
    ]
    assert [c["function"]["arguments"] for c in messages[1]["tool_calls"]] == [
        {"city": "Oslo"},
        {"city": "Rome"},
    ]
    assert "Sunny" in messages[2]["content"] and "Rain" in messages[3]["content"]


def test_calls_come_back_as_function_call_items() -> None:
    req = request(tools=[WEATHER])
    whole = responses.to_response(req, "r", 0, Answer("", "Need data.", (CALL,), DONE))
    assert [item["type"] for item in whole["output"]] == ["reasoning", "function_call"]
    item = whole["output"][1]
    assert (item["call_id"], item["name"], json.loads(item["arguments"])) == (
        "call_abc",
        "get_weather",
        {"city": "Oslo"},
    )
    assert whole["tools"] == [WEATHER] and whole["tool_choice"] == "auto" and whole["status"] == "completed"
    stream = responses.ResponseStream(req, "r", 0)
    events = [e for ev in (Thinking("Need data."), ToolCalls((CALL,)), DONE) for e in stream.event(ev)]
    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, delta = events[4], events[5]
    assert added["item"]["type"] == "function_call" and added["item"]["arguments"] == ""
    assert added["output_index"] == delta["output_index"] == 1 and delta["item_id"] == added["item"]["id"]
    assert json.loads(delta["delta"]) == {"city": "Oslo"}
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["reasoning", "function_call"]
    mixed = responses.ResponseStream(req, "r", 0)
    events = [e for ev in (Text("Checking."), ToolCalls((CALL,)), DONE) for e in mixed.event(ev)]
    assert [i["type"] for i in events[-1]["response"]["output"]] == ["message", "function_call"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


def test_a_required_call_runs_through_the_route(client: TestClient, workers: FakeWorkers) -> None:
    workers.script = b'{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Oslo"}}]}'
    workers.n_ctx = 4096  # the tools' description goes into the prompt
    body = {"model": "tiny:1", "input": "Weather in Oslo?", "tools": [WEATHER], "tool_choice": "required"}
    r = client.post("/v1/responses", json=body)
    assert r.status_code == 200, r.text
    (call,) = [i for i in r.json()["output"] if i["type"] == "function_call"]
    assert call["name"] == "get_weather" and json.loads(call["arguments"]) == {"city": "Oslo"}
    loaded = {m.name: m for m in client.app.state.slm.manager.loaded()}  # type: ignore[attr-defined]
    worker = loaded["tiny:1"].worker
    (sampling,) = worker.backend.sampling.values()
    assert sampling.json_schema is not None and "get_weather" in sampling.json_schema  # the call grammar
    assert "get_weather" in worker.backend.prompt_of(next(iter(worker.backend.sampling)))
    bad = client.post("/v1/responses", json={**body, "tools": [{"type": "web_search"}]})
    assert bad.status_code == 400 and "tools.0" in bad.json()["error"]["message"]


def test_earlier_call_arguments_nested_past_the_parser_are_a_400_on_both_openai_routes(
    client: TestClient,
) -> None:
    deep = "[" * 3000  # the JSON parser recurses once per level: RecursionError, not a 500
    chat = {
        "model": "tiny:1",
        "messages": [
            {"role": "user", "content": "hi"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c", "type": "function", "function": {"name": "f", "arguments": deep}}],
            },
        ],
    }
    r = client.post("/v1/chat/completions", json=chat)
    assert (
        r.status_code == 400 and "messages.1.tool_calls.0.function.arguments" in r.json()["error"]["message"]
    )
    item = {"type": "function_call", "call_id": "c", "name": "f", "arguments": deep}
    r = client.post("/v1/responses", json={"model": "tiny:1", "input": [item]})
    assert r.status_code == 400 and "input.0.arguments" in r.json()["error"]["message"]
