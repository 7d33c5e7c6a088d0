"""OpenAI's Responses API through the official openai client: streaming, structured output,
and stored responses continued with previous_response_id."""

from __future__ import annotations

import json

import openai
import pytest

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration


def test_responses_create_stream_and_structured(server: Server) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        r = client.responses.create(
            model=MODEL,
            input="What is the capital of France?",
            instructions="Answer briefly.",
            max_output_tokens=12,
        )
        assert r.status in {"completed", "incomplete"} and r.output_text
        assert r.usage is not None and r.usage.output_tokens > 0 and r.usage.input_tokens > 0
        cut = client.responses.create(  # greedy: a sampled answer may end in three tokens
            model=MODEL,
            input=[{"role": "user", "content": "Count to ten."}],
            max_output_tokens=3,
            temperature=0,
        )
        assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"  # type: ignore[union-attr]
        events = list(
            client.responses.create(
                model=MODEL,
                input=[{"role": "user", "content": [{"type": "input_text", "text": "Tell me a story."}]}],
                max_output_tokens=16,
                stream=True,
            )
        )
        kinds = [e.type for e in events]
        assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] in {
            "response.completed",
            "response.incomplete",
        }
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")  # type: ignore[union-attr]
        assert deltas and deltas == events[-1].response.output_text  # type: ignore[union-attr]
        assert [e.sequence_number for e in events] == list(range(len(events)))
        schema = {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
        }
        structured = client.responses.create(
            model=MODEL,
            input="Name a city.",
            text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
            max_output_tokens=60,
        )
        assert "city" in json.loads(structured.output_text)
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model=MODEL, input="x", previous_response_id="resp_1")
        assert info.value.code == "previous_response_not_found"


def test_previous_response_id_continues_from_the_prompt_cache(server: Server) -> None:
    rules = " ".join(f"Rule {i}: answer in plain words." for i in range(20))  # a prefix worth caching
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        first = client.responses.create(
            model=MODEL, input="My name is Ada.", instructions=rules, max_output_tokens=8, temperature=0
        )
        second = client.responses.create(
            model=MODEL,
            input="What is my name?",
            instructions=rules,
            previous_response_id=first.id,
            max_output_tokens=8,
            temperature=0,
        )
        assert second.previous_response_id == first.id and second.output_text
        assert first.usage is not None and second.usage is not None
        print(
            f"first: {first.usage.input_tokens} input tokens; continued: {second.usage.input_tokens} input, "
            f"{second.usage.input_tokens_details.cached_tokens} cached"
        )
        assert second.usage.input_tokens > first.usage.input_tokens  # the first turn came along
        assert second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens // 2
        assert client.responses.retrieve(first.id).output_text == first.output_text
        client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(first.id)
        third = client.responses.create(
            model=MODEL, input="And again?", previous_response_id=second.id, max_output_tokens=4
        )
        alone = client.responses.create(model=MODEL, input="And again?", max_output_tokens=4, store=False)
        assert third.usage is not None and alone.usage is not None
        # the conversation came along, the first request's instructions did not
        assert alone.usage.input_tokens < third.usage.input_tokens < second.usage.input_tokens


def test_input_tokens_equal_the_usage_of_the_same_request(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    first = client.responses.create(model=MODEL, input="My name is Ada.", max_output_tokens=8)
    kwargs = {"model": MODEL, "input": "What is my name?", "instructions": "Be brief.",
              "previous_response_id": first.id}  # fmt: skip
    counted = client.responses.input_tokens.count(**kwargs)  # type: ignore[arg-type]
    sent = client.responses.create(max_output_tokens=4, **kwargs)  # type: ignore[arg-type]
    assert sent.usage is not None and counted.input_tokens == sent.usage.input_tokens
    assert client.responses.input_tokens.count(input="hello").input_tokens > 0  # the default model
    client.close()


def test_background_responses_with_the_openai_client(server: Server) -> None:
    """Created, polled, cancelled, and a dropped stream re-attached with starting_after."""
    import time

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
    queued = client.responses.create(
        model=MODEL, input="Name a colour.", background=True, max_output_tokens=8
    )
    assert queued.status in ("queued", "in_progress") and queued.background
    deadline = time.monotonic() + 120
    while (polled := client.responses.retrieve(queued.id)).status in ("queued", "in_progress"):
        assert time.monotonic() < deadline
        time.sleep(0.1)  # polling, as the Agents SDK does
    assert polled.status in ("completed", "incomplete") and polled.output_text

    long = client.responses.create(
        model=MODEL, input="Write a very long story about the sea.", background=True, max_output_tokens=2000
    )
    while client.responses.retrieve(long.id).status == "queued":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.responses.cancel(long.id).status == "cancelled"
    assert client.responses.retrieve(long.id).status == "cancelled"

    prompt = {"model": MODEL, "input": "Tell me about the moon.", "max_output_tokens": 48, "temperature": 0}
    stream = client.responses.create(**prompt, background=True, stream=True)  # type: ignore[call-overload]
    first: list[str] = []
    rid, last = "", -1
    for event in stream:
        rid = rid or (getattr(event, "response", None) and event.response.id) or rid
        last = event.sequence_number
        if event.type == "response.output_text.delta":
            first.append(event.delta)
            if len(first) == 3:
                break
    stream.close()  # the connection drops mid-answer; the answer goes on
    rest = client.responses.retrieve(rid, stream=True, starting_after=last)
    later = [e.delta for e in rest if e.type == "response.output_text.delta"]
    text = "".join(first + later)
    final = client.responses.retrieve(rid)
    assert (
        final.status in ("completed", "incomplete") and text == final.output_text
    )  # nothing lost or doubled
    plain = client.responses.create(**prompt)  # type: ignore[call-overload]
    assert text == plain.output_text  # as an uninterrupted answer (greedy)
    client.close()


def test_a_dropped_stored_stream_is_re_attached_with_the_openai_client(server: Server) -> None:
    """Not only background responses: a stored stream goes on when its client drops."""
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=120)
    prompt = {"model": MODEL, "input": "Describe the sea.", "max_output_tokens": 40, "temperature": 0}
    stream = client.responses.create(**prompt, stream=True)  # type: ignore[call-overload]
    first: list[str] = []
    rid, last = "", -1
    for event in stream:
        if event.type == "response.created":
            rid = event.response.id
        last = event.sequence_number
        if event.type == "response.output_text.delta":
            first.append(event.delta)
            if len(first) == 2:
                break
    stream.close()
    rest = [e.delta for e in client.responses.retrieve(rid, stream=True, starting_after=last)
            if e.type == "response.output_text.delta"]  # fmt: skip
    assert "".join(first + rest) == client.responses.retrieve(rid).output_text
    client.close()
