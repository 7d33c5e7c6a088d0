"""OpenAI's Responses API (`POST /v1/responses`, `GET`/`DELETE /v1/responses/{id}`): ``input``
(a string, or items: messages, earlier ``function_call`` items and their
``function_call_output`` results) and ``instructions`` in; out, a reasoning item when the
model thought, a message, and one ``function_call`` item per tool call, as JSON or as the
Responses streaming events. Function tools, ``tool_choice`` and ``parallel_tool_calls`` go
through the same tool path as the other dialects (answer/tools.py). ``store`` (on by default,
as OpenAI's) keeps the response and its conversation for the caller's API key
(response_store.py); ``previous_response_id`` continues that conversation, under the new
request's ``instructions`` only."""

from __future__ import annotations

import itertools
import json
from typing import Any, Literal

from pydantic import ConfigDict, Field, model_validator

from slmkit.answer import media, parameters, reasoning
from slmkit.answer import tools as tools_api
from slmkit.answer.generation import Answer, AnswerEvent, Done, Text, Thinking, ToolCalls, facts
from slmkit.answer.schema import openai_format
from slmkit.errors import InvalidRequest
from slmkit.pipe import MEDIA_MARKER, Call, Choice, EngineRequest, Image, SamplingParams, Tool
from slmkit.server.errors import public_message, status_for
from slmkit.server.openai.protocol import openai_body
from slmkit.server.wire import RequestBody

IGNORED_FIELDS = {
    "user",
    "service_tier",
    "safety_identifier",
}
TEXT_PARTS = {"input_text", "output_text", "text"}
MAX_ID = 128  # longest response id accepted in previous_response_id
MAX_METADATA, MAX_METADATA_KEY, MAX_METADATA_VALUE = 16, 64, 512  # OpenAI's bounds


class ResponsesRequest(RequestBody):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stream: bool = False
    text: dict[str, Any] | None = None  # {"format": {"type": "text" | "json_object" | "json_schema", ...}}
    reasoning: dict[str, Any] | None = None  # {"effort": "none" | "minimal" | "low" | "medium" | "high"}
    tools: list[dict[str, Any]] | None = None  # {"type": "function", "name", "description", "parameters"}
    tool_choice: str | dict[str, Any] | None = None  # auto, none, required, {"type": "function", "name"}
    parallel_tool_calls: bool | None = None
    store: bool = True
    background: bool = False  # run in a task of its own: poll, cancel, follow its stream
    thinking_token_budget: int | None = Field(default=None, ge=0)  # vLLM's: most reasoning tokens
    # OpenAI's: "auto" drops the oldest of the conversation (after the instructions) to fit the
    # context, reported in slm.dropped_tokens; "disabled" (the default) refuses a prompt too long
    truncation: Literal["auto", "disabled"] | None = None
    previous_response_id: str | None = Field(default=None, max_length=MAX_ID)
    metadata: dict[str, str] | None = Field(default=None, max_length=MAX_METADATA)

    IGNORED = frozenset(IGNORED_FIELDS)
    UNSET = (None, [], {}, False)

    @model_validator(mode="after")
    def _check_metadata(self) -> ResponsesRequest:
        for key, value in (self.metadata or {}).items():
            if len(key) > MAX_METADATA_KEY or len(value) > MAX_METADATA_VALUE:
                raise ValueError(
                    f"metadata: keys are at most {MAX_METADATA_KEY} characters, "
                    f"values at most {MAX_METADATA_VALUE}"
                )
        return self

    def tool_setup(self) -> tuple[list[Tool], Choice]:
        """Responses' flat function tools and tool_choice, checked as every dialect's are."""
        specs = []
        for i, spec in enumerate(self.tools or []):
            if not isinstance(spec, dict) or spec.get("type") != "function":
                kind = spec.get("type") if isinstance(spec, dict) else type(spec).__name__
                raise InvalidRequest(f"tools.{i}: tool type {kind!r} is not supported (function tools are)")
            specs.append({"type": "function", "function": spec})
        choice: Any = self.tool_choice
        if isinstance(choice, dict):
            if choice.get("type") != "function" or not isinstance(choice.get("name"), str):
                raise InvalidRequest("tool_choice: auto, none, required, or {type: function, name}")
            choice = {"type": "function", "function": {"name": choice["name"]}}
        return tools_api.function_tools(specs, choice, self.parallel_tool_calls is not False)

    def input_items(self) -> tuple[dict[str, Any], ...]:
        """``input`` as items: a string is one user message."""
        if isinstance(self.input, str):
            return ({"type": "message", "role": "user", "content": self.input},)
        return tuple(self.input)

    def messages(self, prior: tuple[dict[str, Any], ...] = ()) -> list[dict[str, Any]]:
        return self.conversation(prior)[0]

    def conversation(
        self, prior: tuple[dict[str, Any], ...] = ()
    ) -> tuple[list[dict[str, Any]], list[Image]]:
        """The chat: ``instructions``, then a stored conversation (``prior``), then ``input``;
        an item named in an error is counted from the start of ``prior``; and the images of
        its ``input_image`` parts, each placed in its message's text."""
        out: list[dict[str, Any]] = []
        images: list[Image] = []
        if self.instructions:
            out.append({"role": "system", "content": self.instructions})
        called: dict[str, str] = {}  # call id -> tool name, for the outputs that follow
        calls: list[tuple[str, dict[str, Any]]] = []  # consecutive function_call items: one turn
        for i, item in enumerate((*prior, *self.input_items())):
            kind = item.get("type", "message")
            if kind != "function_call" and calls:
                out.append(tools_api.call_turn(calls))
                calls = []
            if kind == "function_call":
                name, call_id = item.get("name"), item.get("call_id")
                if not isinstance(name, str) or not isinstance(call_id, str):
                    raise InvalidRequest(f"input.{i}: a function_call needs name and call_id strings")
                called[call_id] = name
                calls.append((name, tools_api.call_arguments(item.get("arguments"), f"input.{i}.arguments")))
            elif kind == "function_call_output":
                call_id, result = item.get("call_id"), item.get("output")
                if not isinstance(call_id, str):
                    raise InvalidRequest(f"input.{i}.call_id: must be a string")
                text = result if isinstance(result, str) else _parts_text(result, f"input.{i}.output")
                out.append(tools_api.render_result(called.get(call_id), call_id, text))
            elif kind == "reasoning":
                continue  # an earlier answer's reasoning, sent back by agents: not re-read
            elif kind == "message" and item.get("role") in {"user", "assistant", "system", "developer"}:
                role = "system" if item["role"] == "developer" else item["role"]
                content = item.get("content")
                where = f"input.{i}.content"
                text = content if isinstance(content, str) else _parts_text(content, where, images)
                out.append({"role": role, "content": text})
            else:
                raise InvalidRequest(f"input.{i}: item type {kind!r} is not supported yet")
        if calls:
            out.append(tools_api.call_turn(calls))
        if not out:
            raise InvalidRequest("input: must not be empty")
        return out, images

    def output_schema(self) -> str | None:
        fmt = (self.text or {}).get("format") or {"type": "text"}
        return openai_format(
            fmt.get("type"),
            fmt.get("schema"),
            type_field="text.format.type",
            schema_field="text.format.schema",
        )

    def think(self) -> bool | str | None:
        """``reasoning.effort``: none/minimal turn thinking off, low/medium/high are levels."""
        return reasoning.from_effort((self.reasoning or {}).get("effort"), "reasoning.effort")

    def engine_request(self, request_id: str, prior: tuple[dict[str, Any], ...] = ()) -> EngineRequest:
        values = {"temperature": self.temperature, "top_p": self.top_p, "num_predict": self.max_output_tokens}
        options = parameters.request_options(values, "")
        tools, choice = self.tool_setup()
        messages, images = self.conversation(prior)
        return EngineRequest(
            request_id,
            SamplingParams(json_schema=self.output_schema()),
            messages=tuple(messages),
            images=tuple(images),
            options=tuple(options.items()),
            think=(think := self.think()),
            think_budget=reasoning.budget(think, self.thinking_token_budget),
            tools=tuple(tools),
            tool_choice=choice,
            truncate=0 if self.truncation == "auto" else None,
        )


class InputTokensRequest(ResponsesRequest):
    """``POST /v1/responses/input_tokens``: a Responses request, counted, not run. As in
    OpenAI's API, ``model`` (SLM_DEFAULT_MODEL then) and ``input`` may be left out."""

    model: str = ""
    input: str | list[dict[str, Any]] = ""


def _parts_text(content: Any, where: str, images: list[Image] | None = None) -> str:
    """The text of a list of text parts (input_text, output_text, text); with ``images``, an
    ``input_image`` part (a data URL) is placed by a marker and added there."""
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}: must be a string or a list of text parts")
    parts = []
    for j, part in enumerate(content):
        if images is not None and isinstance(part, dict) and part.get("type") == "input_image":
            url = part.get("image_url")
            if not isinstance(url, str):
                raise InvalidRequest(
                    f"{where}.{j}.image_url: must be a data URL string (file_id is not supported)"
                )
            images.append(media.from_url(url, f"{where}.{j}.image_url"))
            parts.append(MEDIA_MARKER)
            continue
        if not isinstance(part, dict) or part.get("type") not in TEXT_PARTS:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise InvalidRequest(f"{where}.{j}: part type {kind!r} is not supported yet")
        parts.append(str(part.get("text", "")))
    return "".join(parts)


def _response(
    req: ResponsesRequest,
    rid: str,
    created: int,
    model: str,
    status: str,
    output: list[dict[str, Any]],
    done: Done | None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": f"resp_{rid}",
        "object": "response",
        "created_at": created,
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": req.instructions,
        "max_output_tokens": req.max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": req.parallel_tool_calls is not False,
        "temperature": req.temperature,
        "top_p": req.top_p,
        "tool_choice": req.tool_choice or "auto",
        "tools": req.tools or [],
        "text": req.text or {"format": {"type": "text"}},
        "reasoning": req.reasoning,
        "metadata": req.metadata or {},
        "previous_response_id": req.previous_response_id,
        "store": req.store,
        "background": req.background,
        "usage": None,
    }
    if done is not None:
        s = done.stats
        out["usage"] = {
            "input_tokens": s.prompt_tokens,
            "input_tokens_details": {"cached_tokens": s.cached_tokens},
            "output_tokens": s.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": s.reasoning_tokens},
            "total_tokens": s.prompt_tokens + s.completion_tokens,
        }
        out["slm"] = facts(done)  # what happened (answer/generation.facts)
    return out


def _message(rid: str, text: str, status: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_{rid}",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _reasoning(rid: str, text: str) -> dict[str, Any]:
    """A reasoning item: the model's <think> block, as reasoning_text content."""
    return {
        "type": "reasoning",
        "id": f"rs_{rid}",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def _function_call(call: Call, status: str = "completed", arguments: str | None = None) -> dict[str, Any]:
    """A function_call output item (``arguments``: a JSON string, as OpenAI sends it)."""
    return {
        "type": "function_call",
        "id": f"fc_{call.id.removeprefix('call_')}",
        "call_id": call.id,
        "name": call.name,
        "arguments": json.dumps(call.arguments) if arguments is None else arguments,
        "status": status,
    }


def _status(done: Done) -> str:
    return "incomplete" if done.finish_reason == "length" else "completed"


def to_response(req: ResponsesRequest, rid: str, created: int, answer: Answer) -> dict[str, Any]:
    """A whole answer as a Response: a reasoning item when the model thought, the message
    (left out when the answer is only tool calls), then one function_call item per call."""
    status = _status(answer.done)
    output = [_reasoning(rid, answer.thinking)] if answer.thinking else []
    if answer.text or not answer.calls:
        output.append(_message(rid, answer.text, "completed" if status == "completed" else "incomplete"))
    output += [_function_call(c) for c in answer.calls]
    return _response(req, rid, created, answer.done.model, status, output, answer.done)


class ResponseStream:
    """The Responses API's streaming events for one answer, from its answer events: a
    reasoning item (while the model thinks), the message item (when there is text), then a
    function_call item per tool call (added, its arguments as one delta, done). Pure."""

    def __init__(self, req: ResponsesRequest, rid: str, created: int) -> None:
        self.req, self.rid, self.created = req, rid, created
        self._counter = itertools.count()
        self._items: list[dict[str, Any]] = []  # finished output items
        self._thought: list[str] | None = None  # the open reasoning item's text
        self._text: list[str] | None = None  # the open message's text
        self.final: dict[str, Any] | None = None  # the finished Response, once the answer is done

    def _event(self, kind: str, **data: Any) -> dict[str, Any]:
        return {"type": kind, "sequence_number": next(self._counter), **data}

    def start(self) -> list[dict[str, Any]]:
        pending = _response(self.req, self.rid, self.created, self.req.model, "in_progress", [], None)
        return [
            self._event("response.created", response=pending),
            self._event("response.in_progress", response=pending),
        ]

    def _ids(self, item_id: str) -> dict[str, Any]:
        return {"item_id": item_id, "output_index": len(self._items), "content_index": 0}

    def _close_reasoning(self) -> list[dict[str, Any]]:
        if self._thought is None:
            return []
        text, self._thought = "".join(self._thought).strip(), None
        item = _reasoning(self.rid, text)
        out = [
            self._event("response.reasoning_text.done", **self._ids(f"rs_{self.rid}"), text=text),
            self._event("response.output_item.done", output_index=len(self._items), item=item),
        ]
        self._items.append(item)
        return out

    def _open_message(self) -> list[dict[str, Any]]:
        if self._text is not None:
            return []
        out = self._close_reasoning()
        self._text = []
        item = {**_message(self.rid, "", "in_progress"), "content": []}
        part = {"type": "output_text", "text": "", "annotations": []}
        out.append(self._event("response.output_item.added", output_index=len(self._items), item=item))
        out.append(self._event("response.content_part.added", **self._ids(f"msg_{self.rid}"), part=part))
        return out

    def event(self, event: AnswerEvent) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if isinstance(event, Thinking):
            if self._thought is None and self._text is None:
                self._thought = []
                item = {**_reasoning(self.rid, ""), "content": []}
                out.append(
                    self._event("response.output_item.added", output_index=len(self._items), item=item)
                )
            if self._thought is not None:
                self._thought.append(event.text)
                ids = self._ids(f"rs_{self.rid}")
                out.append(self._event("response.reasoning_text.delta", **ids, delta=event.text))
        elif isinstance(event, Text):
            if event.text:
                out += self._open_message()
                assert self._text is not None
                self._text.append(event.text)
                ids = self._ids(f"msg_{self.rid}")
                out.append(self._event("response.output_text.delta", **ids, delta=event.text, logprobs=[]))
        elif isinstance(event, ToolCalls):
            out += self._close_message() + self._close_reasoning()
            for call in event.calls:
                out += self._call_events(call)
        else:
            status = _status(event)
            if self._text is not None or not any(i["type"] == "function_call" for i in self._items):
                out += self._open_message()  # an answer has a message unless it is only calls
            out += self._close_message(status)
            final = _response(self.req, self.rid, self.created, event.model, status, self._items, event)
            self.final = final
            kind = "response.completed" if status == "completed" else "response.incomplete"
            out.append(self._event(kind, response=final))
        return out

    def _close_message(self, status: str = "completed") -> list[dict[str, Any]]:
        if self._text is None:
            return []
        text, self._text = "".join(self._text), None
        ids = self._ids(f"msg_{self.rid}")
        part = {"type": "output_text", "text": text, "annotations": []}
        message = _message(self.rid, text, status)
        out = [
            self._event("response.output_text.done", **ids, text=text, logprobs=[]),
            self._event("response.content_part.done", **ids, part=part),
            self._event("response.output_item.done", output_index=len(self._items), item=message),
        ]
        self._items.append(message)
        return out

    def _call_events(self, call: Call) -> list[dict[str, Any]]:
        item = _function_call(call)
        ids = {"item_id": item["id"], "output_index": len(self._items)}
        out = [
            self._event("response.output_item.added", output_index=len(self._items),
                        item=_function_call(call, "in_progress", "")),
            self._event("response.function_call_arguments.delta", **ids, delta=item["arguments"]),
            self._event("response.function_call_arguments.done", **ids, arguments=item["arguments"]),
            self._event("response.output_item.done", output_index=len(self._items), item=item),
        ]  # fmt: skip
        self._items.append(item)
        return out

    def error(self, exc: Exception) -> dict[str, Any]:
        body = openai_body(public_message(exc), status_for(exc))["error"]
        return self._event("error", code=body["type"], message=body["message"], param=None)


def _sse(data: dict[str, Any]) -> str:
    body = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
    return f"event: {data['type']}\ndata: {body}\n\n"
