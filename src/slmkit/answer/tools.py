"""Tool calling, shared by the OpenAI, Ollama and Anthropic dialects: pure functions.

When the model's chat template handles tools (it reads a ``tools`` variable, as Qwen, Llama
3.1+ and Mistral templates do), the tools, earlier calls (``tool_calls``) and tool results
(``role: tool``) go to the template in the usual structured form. Otherwise the tools are
described in a system message with one answer format for calls:
``{"tool_calls": [{"name": ..., "arguments": {...}}]}``, and earlier calls and results are
written in that format, so any template works. When a call is required (``required``, or a named tool) the
answer is constrained by a grammar to exactly that format with each tool's own parameter
schema, so the call always parses and its arguments validate. With ``auto`` the model may
answer in text or call; an answer that parses as the call format becomes tool calls.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from slmkit.answer.schema import check_schema
from slmkit.errors import InvalidRequest
from slmkit.pipe import Call, Choice, Tool

MAX_TOOLS = 64
NO_TOOLS = Choice("none")


def tool(name: Any, description: Any, parameters: Any, where: str) -> Tool:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.\-]{1,64}", name):
        raise InvalidRequest(f"{where}.name: 1-64 letters, digits, _ . or -")
    params = parameters if parameters is not None else {"type": "object", "properties": {}}
    if not isinstance(params, dict):
        raise InvalidRequest(f"{where}.parameters: must be a JSON schema object")
    return Tool(name, str(description or ""), params)


def function_tools(
    specs: list[dict[str, Any]] | None, choice: Any, parallel: bool = True
) -> tuple[list[Tool], Choice]:
    """OpenAI-shaped tools (``{"type": "function", "function": {...}}``, which Ollama uses too)
    and tool_choice (auto, none, required, or ``{"function": {"name": ...}}``), checked."""
    found = []
    for i, spec in enumerate(specs or []):
        fn = spec.get("function") if isinstance(spec, dict) else None
        if not isinstance(fn, dict) or spec.get("type", "function") != "function":
            raise InvalidRequest(f"tools.{i}: only function tools are supported")
        found.append(tool(fn.get("name"), fn.get("description"), fn.get("parameters"), f"tools.{i}.function"))
    if choice is None:
        picked = Choice("auto" if found else "none", parallel=parallel)
    elif choice in ("auto", "none", "required"):
        picked = Choice(choice, parallel=parallel)
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict):
        picked = Choice("required", name=choice["function"].get("name"), parallel=False)
    else:
        raise InvalidRequest("tool_choice: auto, none, required, or {type: function, function: {name}}")
    check_tools(found, picked)
    return found, picked


def check_tools(tools: list[Tool], choice: Choice) -> None:
    if len(tools) > MAX_TOOLS:
        raise InvalidRequest(f"tools: at most {MAX_TOOLS} tools")
    names = [t.name for t in tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("tools: tool names must be unique")
    if choice.name is not None and choice.name not in names:
        raise InvalidRequest(f"tool_choice: no tool named {choice.name!r}")
    if choice.mode == "required" and not tools:
        raise InvalidRequest("tool_choice: 'required' needs tools")


def call_arguments(raw: Any, where: str) -> dict[str, Any]:
    """An earlier call's arguments, sent back as a JSON string (OpenAI chat, Responses): a
    JSON object, or InvalidRequest naming ``where`` (nesting too deep for the parser too)."""
    try:
        arguments = json.loads(raw or "{}")
    except (TypeError, ValueError, RecursionError):
        raise InvalidRequest(f"{where}: not a JSON string (or nested too deeply)") from None
    if not isinstance(arguments, dict):
        raise InvalidRequest(f"{where}: must be a JSON object")
    return arguments


MAX_PARALLEL_CALLS = 4  # calls one required answer may make when parallel calls are allowed


def call_schema(tools: list[Tool], choice: Choice, max_tokens: int | None = None) -> str:
    """The grammar's schema for a required call: the call format with each tool's arguments.
    Parallel calls: at most MAX_PARALLEL_CALLS, and never more than the token budget (this
    bound is ours, not the caller's: it must not refuse a request with a small budget)."""
    allowed = [t for t in tools if choice.name is None or t.name == choice.name]
    options = []
    for t in allowed:
        arguments = json.loads(check_schema(t.parameters, f"tools.{t.name}.parameters"))
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": arguments},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    item = options[0] if len(options) == 1 else {"anyOf": options}
    calls = {
        "type": "array",
        "items": item,
        "minItems": 1,
        "maxItems": min(MAX_PARALLEL_CALLS, max_tokens or MAX_PARALLEL_CALLS)
        if choice.parallel and choice.name is None
        else 1,
    }
    schema = {
        "type": "object",
        "properties": {"tool_calls": calls},
        "required": ["tool_calls"],
        "additionalProperties": False,
    }
    return json.dumps(schema)


def system_prompt(tools: list[Tool], choice: Choice) -> str:
    lines = ["You can call these tools:"]
    for t in tools:
        about = t.description or "(no description)"
        lines.append(f"- {t.name}: {about} Arguments (JSON schema): {json.dumps(t.parameters)}")
    lines.append(
        "To call tools, answer with only this JSON and nothing else: "
        '{"tool_calls": [{"name": "<tool>", "arguments": {...}}]}.'
    )
    if choice.mode == "required" or choice.name:
        lines.append(f"You must call {'the tool ' + choice.name if choice.name else 'a tool'} now.")
    else:
        lines.append("If no tool is needed, answer the user directly in plain text.")
    return "\n".join(lines)


def render_calls(calls: list[tuple[str, dict[str, Any]]]) -> str:
    """An assistant turn that called tools, as the model is asked to write it."""
    return json.dumps({"tool_calls": [{"name": n, "arguments": a} for n, a in calls]})


def call_turn(calls: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """An assistant turn that called tools, in both forms (with_tools keeps one)."""
    structured = [{"type": "function", "function": {"name": n, "arguments": a}} for n, a in calls]
    return {"role": "assistant", "content": render_calls(calls), "tool_calls": structured}


def supports_tools(template: str) -> bool:
    """Whether a chat template renders tools itself."""
    return "tools" in template and ("tool_calls" in template or "tool_call" in template)


def render_result(name: str | None, call_id: str | None, content: str) -> dict[str, Any]:
    """A tool's result, as a user turn (templates without a tool role accept it)."""
    label = name or "the tool"
    ref = f" (call {call_id})" if call_id else ""
    native = {"role": "tool", "content": content, "name": name or "", "tool_call_id": call_id or ""}
    return {
        "_tool": native,
        "role": "user",
        "content": f"Result of {label}{ref}:\n{content}\n(Use this result to answer my question in plain words.)",  # noqa: E501
    }


def with_tools(
    messages: list[dict[str, Any]], tools: list[Tool], choice: Choice, native: bool = False
) -> list[dict[str, Any]]:
    """The conversation for the template: structured (``native``: the template renders tools,
    see template_vars) or in the text format, with the tool description in the system turn."""
    if native:
        out = []
        for m in messages:
            if "_tool" in m:
                out.append(m["_tool"])
            elif "tool_calls" in m:
                out.append({"role": "assistant", "content": "", "tool_calls": m["tool_calls"]})
            else:
                out.append(m)
        return out
    messages = [{k: v for k, v in m.items() if k not in {"_tool", "tool_calls"}} for m in messages]
    if not tools or choice.mode == "none":
        return messages
    note = system_prompt(tools, choice)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + note}, *messages[1:]]
    return [{"role": "system", "content": note}, *messages]


# how a call begins in the formats parse_calls reads (ours, Hermes/Qwen tags, Mistral, bare)
_CALL_START = re.compile(r'\s*(\{\s*"(tool_calls|name)"|<tool_call>|\[TOOL_CALLS\]|\[\s*\{\s*"name")')
_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_MISTRAL = "[TOOL_CALLS]"


def parse_calls(text: str, tools: list[Tool]) -> list[Call] | None:
    """Tool calls in an answer, or None when it is plain text (or calls unknown tools)."""
    stripped = text.strip()
    candidates: list[Any] = []
    tagged = _TAGGED.findall(stripped)
    try:
        if tagged:  # Hermes / Qwen: <tool_call>{...}</tool_call>
            candidates = [json.loads(t) for t in tagged]
        elif stripped.startswith(_MISTRAL):  # Mistral: [TOOL_CALLS] [...] or [TOOL_CALLS]name[ARGS]{...}
            rest = stripped[len(_MISTRAL) :].strip()
            if rest.startswith("["):
                candidates = json.loads(rest)
            else:
                for part in filter(None, (p.strip() for p in rest.split(_MISTRAL))):
                    name, _, args_text = part.partition("[ARGS]")
                    candidates.append({"name": name.strip(), "arguments": json.loads(args_text)})
        elif stripped.startswith("["):  # a bare list of calls
            candidates = json.loads(stripped)
        elif stripped.startswith("{"):  # ours, or one bare call (Llama 3: name + parameters)
            value = json.loads(stripped)
            candidates = value.get("tool_calls", [value]) if isinstance(value, dict) else []
    except ValueError:
        return None
    if not isinstance(candidates, list):
        return None
    names = {t.name for t in tools}
    calls = []
    for c in candidates:
        if not isinstance(c, dict) or c.get("name") not in names:
            return None
        arguments = c.get("arguments", c.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                return None
        if not isinstance(arguments, dict):
            return None
        calls.append(Call(f"call_{uuid.uuid4().hex[:24]}", c["name"], arguments))
    return calls or None


def template_vars(tools: list[Tool], choice: Choice, native: bool) -> tuple[tuple[str, Any], ...]:
    """The ``tools`` variable for a template that renders tools (OpenAI's function format)."""
    if not native or not tools or choice.mode == "none":
        return ()
    listed = [t for t in tools if choice.name is None or t.name == choice.name]
    spec = [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in listed
    ]
    return (("tools", spec),)


def calls_in(text: str, tools: list[Tool], choice: Choice | None) -> list[Call] | None:
    """The tool calls a whole answer makes, when tools may be called at all. A call that
    repeats an earlier one (same name and arguments: small models do, when parallel calls
    are allowed) is dropped."""
    if not tools or choice is None or choice.mode == "none":
        return None
    calls = parse_calls(text, tools)
    if not calls:
        return calls
    seen: set[str] = set()
    unique = []
    for call in calls:
        key = json.dumps([call.name, call.arguments], sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(call)
    return unique


_LIST_OPEN = re.compile(r'\s*\{\s*"tool_calls"\s*:\s*\[\s*$')


class RepeatWatch:
    """Watches a required call list as the grammar lets it stream
    (``{"tool_calls": [{...}, {...}``) and finds the first call that repeats an earlier one
    (same name and arguments): where the list should have ended. Small models asked for
    parallel calls repeat their one call until the grammar's limit; this ends the answer at
    the first repeat instead, so the tokens are not spent. Pure; linear in the text."""

    def __init__(self) -> None:
        self.text = ""
        self.cut: int | None = None  # where the list should have closed, once a repeat is seen
        self._pos = 0  # characters scanned
        self._depth = 0
        self._string = self._escape = False
        self._start = -1  # where the call being read began
        self._end = 0  # just after the last whole call
        self._seen: set[str] = set()

    def feed(self, text: str) -> bool:
        """True once a repeated call has been seen (then the rest is ignored)."""
        if self.cut is not None:
            return True
        self.text += text
        for i in range(self._pos, len(self.text)):
            ch = self.text[i]
            if self._escape:
                self._escape = False
            elif self._string:
                self._escape = ch == "\\"
                self._string = ch != '"'
            elif ch == '"':
                self._string = True
            elif ch in "{[":
                self._depth += 1
                if self._depth == 3 and ch == "{":
                    self._start = i
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 2 and ch == "}" and self._start >= 0 and self._repeats(i + 1):
                    self.cut = self._end
                    return True
        self._pos = len(self.text)
        return False

    def _repeats(self, end: int) -> bool:
        head = self.text[: self._start]
        if not self._seen and not _LIST_OPEN.match(head):
            self._start = -1  # not the call list's format: nothing to watch
            return False
        try:
            call = json.loads(self.text[self._start : end])
            key = json.dumps([call.get("name"), call.get("arguments")], sort_keys=True)
        except (ValueError, AttributeError, RecursionError):
            return False
        if key in self._seen:
            return True
        self._seen.add(key)
        self._end = end
        return False

    def closed(self) -> str:
        """The list up to its last new call, closed."""
        return self.text if self.cut is None else self.text[: self.cut] + "]}"


class Holdback:
    """A streamed answer that may be tool calls: text streams as it comes unless the answer
    begins like a call (``{``, ``[`` or ``<``) or a call is required; then it is held back
    until the end and parsed. A required list of parallel calls is watched (RepeatWatch):
    ``enough`` turns true at the first repeated call, and the answer is the calls before it."""

    def __init__(self, tools: list[Tool], choice: Choice | None) -> None:
        self.tools, self.choice = tools, choice
        self.calling = bool(tools) and choice is not None and choice.mode != "none"
        self.required = choice is not None and choice.mode == "required"
        self.passing = not self.calling  # known to be text: stream it
        self._held: list[str] = []
        parallel = self.required and choice is not None and choice.parallel and choice.name is None
        self._watch = RepeatWatch() if parallel else None
        self.enough = False  # a repeated call was seen: the answer should end now

    def feed(self, text: str) -> str:
        """The text to send now ("" while held back)."""
        if self.passing:
            return text
        if self._watch is not None:
            self.enough = self._watch.feed(text)
            return ""
        self._held.append(text)
        begun = "".join(self._held).lstrip()
        if begun and not self.required and begun[0] not in "{[<":
            self.passing = True
            out = "".join(self._held)
            self._held.clear()
            return out
        return ""

    def finish(self, truncated: bool = False) -> tuple[str, list[Call] | None]:
        """At the end: (held text still to send, tool calls); one of them is empty. A call
        that did not complete (cut by the token limit: ``truncated``) is never sent as text:
        neither a required one (the grammar only allows calls) nor one that had begun in a
        call format; the answer is then empty (finish reason ``length``, no calls)."""
        text = self._watch.closed() if self._watch is not None else "".join(self._held)
        self._held.clear()
        calls = calls_in(text, self.tools, self.choice) if text else None
        if calls:
            return "", calls
        if text and (self.required or (truncated and _CALL_START.match(text))):
            return "", None
        return text, None
