"""Anthropic's Messages API through the official `anthropic` client, streaming included."""

from __future__ import annotations

import anthropic
import pytest

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration


def test_messages_with_the_anthropic_client(server: Server, request: pytest.FixtureRequest) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    request.addfinalizer(client.close)
    msg = client.messages.create(
        model=MODEL,
        max_tokens=12,
        system="Answer briefly.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        extra_body={"temperature": 0},
    )
    assert msg.role == "assistant" and msg.content[0].type == "text" and msg.content[0].text
    assert msg.stop_reason in {"end_turn", "max_tokens"} and msg.usage.output_tokens > 0
    assert msg.usage.input_tokens > 0
    cut = client.messages.create(
        model=MODEL,
        max_tokens=3,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Count to ten."}]}],
        extra_body={"temperature": 0},  # sampled, a 3-token answer may end on its own
    )
    assert cut.stop_reason == "max_tokens" and cut.usage.output_tokens == 3
    with client.messages.stream(
        model=MODEL,
        max_tokens=16,
        messages=[{"role": "user", "content": "Tell me a story."}],
        extra_body={"temperature": 0},
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 1 and "".join(pieces) == final.content[0].text  # type: ignore[union-attr]
    assert final.usage.output_tokens > 0


def test_stop_sequences_and_errors(server: Server, request: pytest.FixtureRequest) -> None:
    client = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    request.addfinalizer(client.close)
    free = client.messages.create(
        model=MODEL,
        max_tokens=30,
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "List three colours."}],
    )
    text = free.content[0].text  # type: ignore[union-attr]
    word = next(w for w in text.split() if len(w) > 3)
    stopped = client.messages.create(
        model=MODEL,
        max_tokens=30,
        extra_body={"temperature": 0},
        stop_sequences=[word],
        messages=[{"role": "user", "content": "List three colours."}],
    )
    assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == word
    assert word not in stopped.content[0].text  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError) as info:
        client.messages.create(
            model=MODEL,
            max_tokens=5,
            messages=[
                {"role": "user", "content": [{"type": "image", "source": {"type": "url", "url": "x"}}]}
            ],
        )
    assert "image" in str(info.value)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope:1", max_tokens=5, messages=[{"role": "user", "content": "x"}])


WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}},
    "required": ["city"],
}
TOOLS = [{"name": "get_weather", "description": "Current weather in a city", "input_schema": WEATHER}]


def test_tool_use_round_trip_and_streaming(server: Server, request: pytest.FixtureRequest) -> None:
    import jsonschema

    client = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    request.addfinalizer(client.close)
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    msg = client.messages.create(
        model=MODEL, max_tokens=100, messages=ask, tools=TOOLS, tool_choice={"type": "any"}
    )  # type: ignore[arg-type]
    assert msg.stop_reason == "tool_use"
    use = msg.content[0]
    assert use.type == "tool_use" and use.name == "get_weather" and use.id.startswith("toolu_")
    jsonschema.validate(use.input, WEATHER)
    history = [
        *ask,
        {"role": "assistant", "content": [b.model_dump() for b in msg.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21 degrees and sunny"}],
        },
    ]
    final = client.messages.create(
        model=MODEL, max_tokens=40, messages=history, tools=TOOLS, tool_choice={"type": "none"},  # type: ignore[arg-type]
        extra_body={"temperature": 0},
    )  # fmt: skip
    assert (
        final.stop_reason in {"end_turn", "max_tokens"}
        and final.content[0].type == "text"
        and final.content[0].text
    )
    with client.messages.stream(
        model=MODEL,
        max_tokens=100,
        messages=ask,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": "get_weather"},  # type: ignore[arg-type]
    ) as stream:
        streamed = stream.get_final_message()
    assert streamed.stop_reason == "tool_use" and streamed.content[0].type == "tool_use"
    jsonschema.validate(streamed.content[0].input, WEATHER)  # type: ignore[union-attr]


def test_count_tokens_equals_the_input_tokens_of_the_message(
    server: Server, request: pytest.FixtureRequest
) -> None:
    """What Claude Code and other harnesses call before sending: the real template's count."""
    client = anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0)
    request.addfinalizer(client.close)
    tools = [{"name": "get_weather", "description": "Weather for a city",
              "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]  # fmt: skip
    for extra in ({}, {"system": "Answer briefly."}, {"tools": tools}):
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        counted = client.messages.count_tokens(model=MODEL, messages=messages, **extra)  # type: ignore[arg-type]
        sent = client.messages.create(model=MODEL, max_tokens=2, messages=messages, **extra)  # type: ignore[arg-type]
        assert counted.input_tokens == sent.usage.input_tokens > 5, extra
