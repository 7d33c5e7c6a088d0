"""Run by tests/integration/test_isolated_frameworks.py in LlamaIndex's own virtual
environment (it pins an openai below the suite's): completion, chat, streaming and a
required tool call through slmkit. Prints one JSON object."""

import json
import sys

from llama_index.core.llms import ChatMessage
from llama_index.core.tools import FunctionTool
from llama_index.llms.openai_like import OpenAILike

base_url, model = sys.argv[1], sys.argv[2]
llm = OpenAILike(
    model=model, api_base=f"{base_url}/v1", api_key="unused", is_chat_model=True,
    is_function_calling_model=True, temperature=0, max_tokens=64, context_window=4096,
)  # fmt: skip


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"Sunny in {city}"


pieces = [r.delta or "" for r in llm.stream_chat([ChatMessage(role="user", content="Count to three.")])]
tool = FunctionTool.from_defaults(fn=get_weather)
response = llm.chat_with_tools([tool], user_msg="What is the weather in Oslo?", tool_required=True)
(call,) = llm.get_tool_calls_from_response(response, error_on_no_tool_call=True)
print(json.dumps({
    "complete": llm.complete("The capital of France is").text,
    "chat": llm.chat([ChatMessage(role="user", content="Say hello.")]).message.content,
    "stream_pieces": len(pieces), "stream": "".join(pieces),
    "tool": call.tool_name, "arguments": call.tool_kwargs,
}))  # fmt: skip
