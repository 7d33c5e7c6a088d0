"""Agent frameworks against slmkit, unmodified but for the base URL: pydantic-ai (validated
objects by tool output and by native JSON-schema output on both its Chat Completions and
Responses models, and a function tool) and a LangGraph ReAct agent over LangChain's ChatOpenAI."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import pytest
from openai import AsyncOpenAI
from pydantic import BaseModel, Field

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration
T = TypeVar("T")


class City(BaseModel):
    name: str = Field(max_length=40)
    country: str = Field(max_length=40)


def with_model(server: Server, kind: str, use: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``use`` with a pydantic-ai OpenAI model (``chat`` or ``responses``) on slmkit."""
    from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
    from pydantic_ai.providers.openai import OpenAIProvider

    async def run() -> T:
        client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
        try:
            model_class = OpenAIChatModel if kind == "chat" else OpenAIResponsesModel
            return await use(model_class(MODEL, provider=OpenAIProvider(openai_client=client)))
        finally:
            await client.close()

    return asyncio.run(run())


@pytest.mark.parametrize("kind", ["chat", "responses"])
def test_pydantic_ai_returns_validated_objects(server: Server, kind: str) -> None:
    from pydantic_ai import Agent, NativeOutput
    from pydantic_ai.settings import ModelSettings

    settings = ModelSettings(temperature=0, max_tokens=160)  # room for both strings at their longest

    async def use(model: Any) -> tuple[Any, Any]:
        by_tool = Agent(model, output_type=City, model_settings=settings, retries=2)
        native = Agent(model, output_type=NativeOutput(City), model_settings=settings)
        first = await by_tool.run("Name the capital of France and its country.")
        second = await native.run("Name the capital of Italy and its country.")
        return first.output, second.output

    for city in with_model(server, kind, use):
        print(f"pydantic-ai {kind}: {city!r}")
        assert isinstance(city, City) and city.name


class Weather(BaseModel):
    city: str = Field(max_length=40)
    summary: str = Field(max_length=80)


def test_pydantic_ai_answers_through_its_output_tool_beside_a_function_tool(server: Server) -> None:
    """With a function tool and the output tool both allowed (a required call among two),
    the run ends with pydantic-ai's final_result call and a validated object. (SmolLM2 135M
    goes straight to the result; forced to call get_weather first, it calls it again and
    again until the context is full: a framework loop no server can end for it.)"""
    from pydantic_ai import Agent
    from pydantic_ai.settings import ModelSettings

    asked: list[str] = []

    async def use(model: Any) -> Any:
        agent = Agent(
            model,
            output_type=Weather,
            instructions="First call get_weather, then give the final result.",
            model_settings=ModelSettings(
                temperature=0, max_tokens=200, tool_choice=["get_weather", "final_result"]
            ),
        )

        @agent.tool_plain
        def get_weather(city: str) -> str:
            """The weather in a city."""
            asked.append(city)
            return f"It is sunny in {city}."

        return await agent.run("What is the weather in Paris?")

    result = with_model(server, "chat", use)
    print(f"pydantic-ai tool calls: {asked}; output: {result.output!r}")
    assert isinstance(result.output, Weather)
    names = [p.tool_name for m in result.all_messages() for p in m.parts if p.part_kind == "tool-call"]
    assert names and names[-1] == "final_result"


def test_a_langgraph_graph_calls_a_tool_then_answers(server: Server) -> None:
    """A LangGraph graph over LangChain's ChatOpenAI: a step that must call a tool, LangGraph's
    ToolNode running it, and a step that answers from its result."""
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    cities: list[str] = []

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        cities.append(city)
        return f"It is sunny in {city}."

    http = httpx.Client()  # its own: langchain-openai shares a cached client per base URL
    llm = ChatOpenAI(
        model=MODEL,
        base_url=f"{server.url}/v1",
        api_key="unused",
        temperature=0,
        max_tokens=48,
        max_retries=0,
        http_client=http,
    )
    caller = llm.bind_tools([get_weather], tool_choice="required")

    def call(state: MessagesState) -> dict[str, Any]:
        return {"messages": [caller.invoke(state["messages"])]}

    def answer(state: MessagesState) -> dict[str, Any]:
        return {"messages": [llm.invoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("call", call)
    graph.add_node("tools", ToolNode([get_weather]))
    graph.add_node("answer", answer)
    graph.add_edge(START, "call")
    graph.add_edge("call", "tools")
    graph.add_edge("tools", "answer")
    graph.add_edge("answer", END)
    try:
        result = graph.compile().invoke({"messages": [("user", "What is the weather in Paris?")]})
    finally:
        http.close()
    kinds = [m.type for m in result["messages"]]
    print(f"langgraph: {cities}; {result['messages'][-1].content!r}")
    assert kinds == ["human", "ai", "tool", "ai"] and cities and isinstance(cities[0], str)
    assert result["messages"][2].content == f"It is sunny in {cities[0]}." and result["messages"][-1].content
