"""Tool calling with the real model: the official openai and ollama clients and LangChain's
OpenAI and Ollama chat models. A required (or named) call always arrives parsed with arguments
that validate against the tool's schema; the tool result round-trips into the final answer."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import ollama
import openai
import pytest

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 30}},
    "required": ["city"],
}
TIME = {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET", "PST"]}}, "required": ["zone"]}
TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather in a city", "parameters": WEATHER},
    },
    {
        "type": "function",
        "function": {"name": "get_time", "description": "Time in a zone", "parameters": TIME},
    },
]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


def test_openai_required_named_streamed_and_round_trip(server: Server) -> None:
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        r = client.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=120
        )  # type: ignore[arg-type]
        choice = r.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        calls = choice.message.tool_calls or []
        assert calls and all(c.function.name in {"get_weather", "get_time"} for c in calls)  # type: ignore[union-attr]
        for c in calls:
            schema = WEATHER if c.function.name == "get_weather" else TIME  # type: ignore[union-attr]
            jsonschema.validate(json.loads(c.function.arguments), schema)  # type: ignore[union-attr]
        named = client.chat.completions.create(
            model=MODEL, messages=ASK, tools=TOOLS, max_tokens=60,  # type: ignore[arg-type]
            tool_choice={"type": "function", "function": {"name": "get_time"}},
        )  # fmt: skip
        (only,) = named.choices[0].message.tool_calls or []
        assert only.function.name == "get_time"  # type: ignore[union-attr]
        jsonschema.validate(json.loads(only.function.arguments), TIME)  # type: ignore[union-attr]
        chunks = list(
            client.chat.completions.create(
                model=MODEL,
                messages=ASK,
                tools=TOOLS,
                tool_choice="required",
                max_tokens=120,
                stream=True,  # type: ignore[arg-type]
            )
        )
        deltas = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
        assert deltas and deltas[0].function and deltas[0].function.name and deltas[0].id
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        first = calls[0]
        history: list[Any] = [
            *ASK,
            {"role": "assistant", "content": None, "tool_calls": [first.model_dump()]},
            {"role": "tool", "tool_call_id": first.id, "content": "It is 21 degrees and sunny."},
        ]
        final = client.chat.completions.create(
            model=MODEL, messages=history, tools=TOOLS, tool_choice="none", max_tokens=40, temperature=0
        )  # type: ignore[arg-type]
        assert final.choices[0].finish_reason in {"stop", "length"} and final.choices[0].message.content
        assert not final.choices[0].message.tool_calls


def test_ollama_client_tools(server: Server) -> None:
    client = ollama.Client(host=server.url)
    try:
        r = client.chat(
            model=MODEL, messages=ASK, tools=TOOLS, options={"tool_choice": "required", "num_predict": 120}
        )
        calls = r.message.tool_calls or []
        assert calls and calls[0].function.name in {"get_weather", "get_time"}
        assert isinstance(calls[0].function.arguments, dict)
        history = [
            *ASK,
            {"role": "assistant", "content": "", "tool_calls": [c.model_dump() for c in calls]},
            {"role": "tool", "content": "It is 21 degrees and sunny.", "tool_name": calls[0].function.name},
        ]
        final = client.chat(
            model=MODEL,
            messages=history,
            tools=TOOLS,
            options={"tool_choice": "none", "num_predict": 40, "temperature": 0},
        )
        assert final.message.content and not final.message.tool_calls
    finally:
        client._client.close()


def test_langchain_openai_and_ollama_chat_models(server: Server) -> None:
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_ollama import ChatOllama
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather for a city."""
        return f"It is 21 degrees and sunny in {city}."

    question = [HumanMessage("What is the weather in Paris?")]
    http = httpx.Client()  # its own: langchain-openai shares a cached client per base URL
    openai_llm = ChatOpenAI(
        base_url=f"{server.url}/v1", api_key="x", model=MODEL, temperature=0, max_tokens=100, http_client=http
    )  # type: ignore[arg-type]
    ollama_llm = ChatOllama(base_url=server.url, model=MODEL)
    cases: list[tuple[Any, Any]] = [
        (
            openai_llm.bind_tools([get_weather], tool_choice="required"),
            openai_llm.bind_tools([get_weather], tool_choice="none"),
        ),
        (
            ollama_llm.bind_tools(
                [get_weather], options={"tool_choice": "required", "temperature": 0, "num_predict": 100}
            ),
            ollama_llm.bind_tools(
                [get_weather], options={"tool_choice": "none", "temperature": 0, "num_predict": 60}
            ),
        ),
    ]
    try:
        for calling, answering in cases:
            ai = calling.invoke(question)
            assert ai.tool_calls and ai.tool_calls[0]["name"] == "get_weather"
            args = ai.tool_calls[0]["args"]
            jsonschema.validate(args, WEATHER)
            result = get_weather.invoke(args)
            final = answering.invoke(
                [*question, ai, ToolMessage(result, tool_call_id=ai.tool_calls[0]["id"])]
            )
            assert isinstance(final.content, str) and final.content.strip() and not final.tool_calls
    finally:
        http.close()
        ollama_llm._client._client.close()  # type: ignore[union-attr]


def test_a_forced_call_cut_by_max_tokens_is_not_text_on_any_dialect(server: Server) -> None:
    """A required call that runs out of tokens: finish reason length and no calls, never the
    half-written call format as content (OpenAI, Anthropic; Ollama, which cannot force a call)."""
    import anthropic

    city = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools: list[Any] = [
        {
            "type": "function",
            "function": {"name": "get_weather", "description": "Weather", "parameters": city},
        }
    ]

    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        r = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=tools,
            tool_choice="required",
            max_tokens=5,  # type: ignore[arg-type]
        )
        assert r.choices[0].finish_reason == "length"
        assert not r.choices[0].message.content and not r.choices[0].message.tool_calls
        streamed = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            tools=tools,
            tool_choice="required",
            max_tokens=5,
            stream=True,  # type: ignore[arg-type]
        )
        chunks = [c for c in streamed if c.choices]
        assert not "".join(c.choices[0].delta.content or "" for c in chunks)
        assert chunks[-1].choices[0].finish_reason == "length"
    with anthropic.Anthropic(base_url=server.url, api_key="x", max_retries=0) as claude:
        m = claude.messages.create(
            model=MODEL,
            max_tokens=5,
            messages=ASK,  # type: ignore[arg-type]
            tools=[{"name": "get_weather", "description": "Weather in a city", "input_schema": city}],
            tool_choice={"type": "any"},
        )
        assert m.stop_reason == "max_tokens"
        assert all(b.type != "tool_use" and "tool_calls" not in getattr(b, "text", "") for b in m.content)
    native = ollama.Client(host=server.url)
    try:
        reply = native.chat(
            model=MODEL,
            messages=ASK,
            tools=tools,
            options={"num_predict": 5, "temperature": 0},
            format=None,
        )
    finally:
        native._client.close()
    # Ollama has no tool_choice: the model may answer in words, but never in a half-written call
    assert reply.done_reason == "length" and not reply.message.tool_calls
    assert "tool_call" not in (reply.message.content or "") and not (reply.message.content or "").startswith(
        "{"
    )


def test_a_required_parallel_call_ends_at_the_first_repeat(server: Server) -> None:
    """Asked for the weather in Oslo and the time in UTC with parallel calls allowed, SmolLM2
    writes both calls, then repeats one: the answer ends at the first repeat (70 tokens here)
    instead of running on (93 tokens without the cut), and no call comes back twice."""
    ask = [{"role": "user", "content": "Weather in Oslo and the time in UTC?"}]
    tools = [
        {"type": "function", "function": {**TOOLS[0]["function"], "description": "The weather in a city."}},
        TOOLS[1],
    ]
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:

        def answer(choice: Any) -> Any:
            return client.chat.completions.create(
                model=MODEL, messages=ask, tools=tools, tool_choice=choice, max_tokens=200, temperature=0
            )  # type: ignore[arg-type]

        r = answer("required")
        calls = r.choices[0].message.tool_calls or []
        keys = [(c.function.name, c.function.arguments) for c in calls]  # type: ignore[union-attr]
        alone = [answer({"type": "function", "function": {"name": n}}) for n in ("get_weather", "get_time")]
        sizes = [a.usage.completion_tokens for a in alone if a.usage is not None]
        assert r.usage is not None and len(sizes) == 2
        print(f"parallel: {keys}, {r.usage.completion_tokens} tokens; one call each: {sizes}")
        assert keys and len(set(keys)) == len(keys) and r.choices[0].finish_reason == "tool_calls"
        # both calls and at most one repeated call: never a list that runs on past the repeat
        assert r.usage.completion_tokens < sizes[0] + sizes[1] + max(sizes)


def test_a_worker_ends_a_request_early_with_its_stats(smollm2_gguf: Any) -> None:
    import asyncio

    from slmkit.models.runner import WorkerProcess
    from slmkit.pipe import EngineRequest, Finished, LoadSpec, SamplingParams, TextDelta

    async def run() -> tuple[list[object], list[object]]:
        worker = WorkerProcess(LoadSpec(model_path=str(smollm2_gguf), n_ctx=512, n_threads=1), None, {})
        await worker.start(120)
        try:
            story = EngineRequest(
                "long", SamplingParams(temperature=0, max_tokens=200), prompt="Once upon a time"
            )
            events: list[object] = []
            async for event in worker.generate(story):
                events.append(event)
                if isinstance(event, TextDelta) and event.text:
                    worker.end("long")
            after = [
                e
                async for e in worker.generate(
                    EngineRequest("next", SamplingParams(max_tokens=4), prompt="Hi")
                )
            ]
            return events, after
        finally:
            await worker.stop()

    events, after = asyncio.run(run())
    done = events[-1]
    assert isinstance(done, Finished) and done.reason == "cancelled"
    assert 0 < done.stats.completion_tokens < 50 and done.stats.prompt_tokens > 0
    assert isinstance(after[-1], Finished) and after[-1].reason in {"stop", "length"}
