"""The OpenAI Agents SDK against slmkit, unmodified but for the base URL: an agent with a
function tool runs through both of the SDK's model classes (Responses, its default, and Chat
Completions), the tool runs with parsed arguments, and its result ends the run."""

from __future__ import annotations

import asyncio

import pytest
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    RunConfig,
    Runner,
    RunResult,
    function_tool,
)
from openai import AsyncOpenAI

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("model_class", [OpenAIResponsesModel, OpenAIChatCompletionsModel])
def test_an_agent_calls_its_function_tool(server: Server, model_class: type) -> None:
    cities: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        cities.append(city)
        return f"It is sunny in {city}."

    async def run() -> RunResult:
        client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        try:
            agent = Agent(
                name="weather",
                instructions="You answer questions about the weather with the get_weather tool.",
                model=model_class(model=MODEL, openai_client=client),
                tools=[get_weather],
                model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=64),
                tool_use_behavior="stop_on_first_tool",
            )
            config = RunConfig(tracing_disabled=True)
            return await Runner.run(agent, "What is the weather in Paris?", run_config=config, max_turns=2)
        finally:
            await client.close()

    result = asyncio.run(run())
    assert len(cities) == 1 and isinstance(cities[0], str) and cities[0]
    assert result.final_output == f"It is sunny in {cities[0]}."


def test_a_run_continues_from_the_last_stored_response(server: Server) -> None:
    """The second run sends only its new input with previous_response_id; slmkit supplies the
    first run's conversation from its store. (Both runs end on a grammar-constrained call, so
    neither depends on where a 135M model chooses to stop talking.)"""

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"It is sunny in {city}."

    async def run() -> tuple[RunResult, RunResult, str | None]:
        client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        try:
            config = RunConfig(tracing_disabled=True)
            agent = Agent(
                name="weather",
                instructions="You answer questions about the weather with the get_weather tool.",
                model=OpenAIResponsesModel(model=MODEL, openai_client=client),
                tools=[get_weather],
                model_settings=ModelSettings(tool_choice="required", temperature=0, max_tokens=64),
                tool_use_behavior="stop_on_first_tool",
            )
            first = await Runner.run(agent, "What is the weather in Paris?", run_config=config, max_turns=2)
            second = await Runner.run(
                agent,
                "And in Rome?",
                previous_response_id=first.last_response_id,
                run_config=config,
                max_turns=2,
            )
            stored = await client.responses.retrieve(str(second.last_response_id))
            return first, second, stored.previous_response_id
        finally:
            await client.close()

    first, second, previous = asyncio.run(run())
    assert first.last_response_id and second.last_response_id != first.last_response_id
    assert previous == first.last_response_id
    assert isinstance(second.final_output, str) and second.final_output.startswith("It is sunny in")
