"""Ollama's chat templates: the part of Go's text/template that Modelfiles use, rendered safely.

Supported: text and ``{{ action }}`` with ``{{-``/``-}}`` whitespace trimming; ``.Field``
chains on the data (``.System``, ``.Prompt``, ``.Response``, ``.Messages``, ``.Role``,
``.Content``, ``.Tools``) and on variables (``$.System``, ``$msg.Role``); ``if``/``else if``/
``else``/``end``; ``range [$i, $v :=] PIPELINE``/``end``; ``$x := PIPELINE``; literals
(strings, numbers, true/false/nil); parenthesised calls to a fixed set of functions (eq, ne,
lt, le, gt, ge, and, or, not, len, index, slice, print). There is no way to call anything
else, loops only walk the data they are given, and a deadline and an output cap bound the
work, so an untrusted template cannot do more than print. Anything unsupported is a
TemplateError naming it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from slmkit.errors import TemplateError

MAX_OUTPUT = 4 * 1024 * 1024
_ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.DOTALL)
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?)|(?P<lp>\()|(?P<rp>\))'
    r"|(?P<assign>:=)|(?P<comma>,)|(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)"
    r"|(?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+|\.)|(?P<ident>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass
class _Node:
    kind: str  # text, expr, if, range, assign
    text: str = ""
    expr: list[Any] = field(default_factory=list)
    branches: list[tuple[list[Any] | None, list[_Node]]] = field(default_factory=list)  # if: (cond, body)
    body: list[_Node] = field(default_factory=list)
    names: tuple[str, ...] = ()  # range/assign variables


def _lex(source: str) -> list[tuple[str, str]]:
    """("text", s) and ("action", s) pieces, with trim markers applied to the text."""
    out: list[tuple[str, str]] = []
    pos = 0
    for match in _ACTION.finditer(source):
        text = source[pos : match.start()]
        if match.group(1):
            text = text.rstrip()
        out.append(("text", text))
        out.append(("action", match.group(2).strip()))
        pos = match.end()
        if match.group(3):
            rest = source[pos:]
            pos += len(rest) - len(rest.lstrip())
    out.append(("text", source[pos:]))
    return [piece for piece in out if piece != ("text", "")]


def _tokens(action: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(action):
        if action[pos:].strip() == "":
            break
        match = _TOKEN.match(action, pos)
        if match is None or match.end() == pos:
            raise TemplateError(f"template: cannot read {action[pos : pos + 20]!r}")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind)))
        pos = match.end()
    return out


def _parse_expr(tokens: list[tuple[str, str]]) -> list[Any]:
    """A command: [callee-or-value, args...] as nested lists of tokens."""
    items: list[Any] = []
    while tokens:
        kind, value = tokens.pop(0)
        if kind == "lp":
            items.append(_parse_expr(tokens))
        elif kind == "rp":
            return items
        else:
            items.append((kind, value))
    return items


class GoTemplate:
    def __init__(self, source: str, *, timeout: float = 1.0) -> None:
        self.source = source
        self.timeout = timeout
        self._nodes = self._parse(_lex(source))

    # -- parsing ---------------------------------------------------------------------------
    def _parse(self, pieces: list[tuple[str, str]]) -> list[_Node]:
        stack: list[tuple[_Node, list[_Node]]] = []
        root: list[_Node] = []
        current = root
        for kind, text in pieces:
            if kind == "text":
                current.append(_Node("text", text=text))
                continue
            if text.startswith("/*") or not text:
                continue
            word = text.split(None, 1)[0]
            rest = text[len(word) :].strip()
            if word == "if":
                node = _Node("if", branches=[(self._expr(rest), [])])
                current.append(node)
                stack.append((node, current))
                current = node.branches[0][1]
            elif word == "else":
                if not stack or stack[-1][0].kind != "if":
                    raise TemplateError("template: else without if")
                node = stack[-1][0]
                cond = self._expr(rest[2:].strip()) if rest.startswith("if") else None
                node.branches.append((cond, []))
                current = node.branches[-1][1]
            elif word == "range":
                names: tuple[str, ...] = ()
                match = re.match(r"(\$\w*)\s*(?:,\s*(\$\w*))?\s*:=\s*(.*)", rest, re.DOTALL)
                if match:
                    names = tuple(n for n in match.group(1, 2) if n)
                    rest = match.group(3)
                node = _Node("range", expr=self._expr(rest), names=names)
                current.append(node)
                stack.append((node, current))
                current = node.body
            elif word == "end":
                if not stack:
                    raise TemplateError("template: end without if or range")
                _, current = stack.pop()
            elif word in {"with", "define", "template", "block", "break", "continue"}:
                raise TemplateError(f"template: '{word}' is not supported")
            elif re.match(r"\$\w*\s*:?=", text):
                name, _, expr = text.partition("=")
                current.append(_Node("assign", expr=self._expr(expr), names=(name.rstrip(":").strip(),)))
            else:
                current.append(_Node("expr", expr=self._expr(text)))
        if stack:
            raise TemplateError("template: missing end")
        return root

    @staticmethod
    def _expr(text: str) -> list[Any]:
        if "|" in re.sub(r'"(?:[^"\\]|\\.)*"', "", text):
            raise TemplateError("template: pipelines with | are not supported")
        return _parse_expr(_tokens(text))

    # -- rendering -------------------------------------------------------------------------
    def render(self, data: dict[str, Any]) -> str:
        self._deadline = time.monotonic() + self.timeout
        out: list[str] = []
        self._size = 0
        self._run(self._nodes, data, {"$": data}, out)
        return "".join(out)

    def _emit(self, out: list[str], text: str) -> None:
        self._size += len(text)
        if self._size > MAX_OUTPUT:
            raise TemplateError("chat template output exceeds the size limit")
        if time.monotonic() > self._deadline:
            raise TemplateError(f"chat template took longer than {self.timeout:g}s to render")
        out.append(text)

    def _run(self, nodes: Sequence[_Node], dot: Any, env: dict[str, Any], out: list[str]) -> None:
        for node in nodes:
            if node.kind == "text":
                self._emit(out, node.text)
            elif node.kind == "expr":
                value = self._eval(node.expr, dot, env)
                self._emit(out, _show(value))
            elif node.kind == "assign":
                env[node.names[0]] = self._eval(node.expr, dot, env)
            elif node.kind == "if":
                for cond, body in node.branches:
                    if cond is None or _truth(self._eval(cond, dot, env)):
                        self._run(body, dot, env, out)
                        break
            elif node.kind == "range":
                items = self._eval(node.expr, dot, env)
                pairs = list(items.items()) if isinstance(items, dict) else list(enumerate(items or []))
                for key, item in pairs:
                    inner = dict(env)
                    if len(node.names) == 2:
                        inner[node.names[0]], inner[node.names[1]] = key, item
                    elif node.names:
                        inner[node.names[0]] = item
                    self._run(node.body, item, inner, out)

    def _eval(self, expr: list[Any], dot: Any, env: dict[str, Any]) -> Any:
        if not expr:
            raise TemplateError("template: empty expression")
        head = expr[0]
        if isinstance(head, tuple) and head[0] == "ident" and head[1] not in {"true", "false", "nil"}:
            args = [self._value(a, dot, env) for a in expr[1:]]
            return _call(head[1], args)
        if len(expr) > 1:
            raise TemplateError("template: a value cannot take arguments")
        return self._value(head, dot, env)

    def _value(self, item: Any, dot: Any, env: dict[str, Any]) -> Any:
        if isinstance(item, list):
            return self._eval(item, dot, env)
        kind, text = item
        if kind == "str":
            return text[1:-1] if text.startswith("`") else bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if kind == "num":
            return float(text) if "." in text else int(text)
        if kind == "ident":
            return {"true": True, "false": False, "nil": None}[text]
        if kind == "field":
            return _fields(dot, text)
        if kind == "var":
            name, _, path = text.partition(".")
            if name not in env:
                raise TemplateError(f"template: undefined variable {name}")
            return _fields(env[name], "." + path) if path else env[name]
        raise TemplateError(f"template: unexpected {text!r}")


def _fields(value: Any, path: str) -> Any:
    if path == ".":
        return value
    for name in path.strip(".").split("."):
        if isinstance(value, dict):
            value = value.get(name)
        else:
            return None
    return value


def _truth(value: Any) -> bool:
    return bool(value) if value is not None else False


def _show(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _call(name: str, args: list[Any]) -> Any:
    if name in {"eq", "ne", "lt", "le", "gt", "ge"}:
        if len(args) < 2:
            raise TemplateError(f"template: {name} needs two arguments")
        first, rest = args[0], args[1:]
        if name == "eq":
            return any(first == other for other in rest)
        other = rest[0]
        try:
            return {
                "ne": first != other,
                "lt": first < other,
                "le": first <= other,
                "gt": first > other,
                "ge": first >= other,
            }[name]
        except TypeError as exc:
            raise TemplateError(f"template: cannot compare with {name}") from exc
    if name == "and":
        result: Any = True
        for arg in args:
            result = arg
            if not _truth(arg):
                return arg
        return result
    if name == "or":
        for arg in args:
            if _truth(arg):
                return arg
        return args[-1] if args else None
    if name == "not":
        return not _truth(args[0]) if args else True
    if name == "len":
        return len(args[0]) if args and args[0] is not None else 0
    if name == "index":
        value = args[0]
        for key in args[1:]:
            try:
                value = value[key]
            except (IndexError, KeyError, TypeError) as exc:
                raise TemplateError("template: index out of range") from exc
        return value
    if name == "slice":
        value = list(args[0] or [])
        bounds = [int(a) for a in args[1:3]]
        return value[bounds[0] : bounds[1]] if len(bounds) == 2 else value[bounds[0] :] if bounds else value
    if name == "print":
        return "".join(_show(a) for a in args)
    raise TemplateError(f"template: function {name!r} is not supported")


def ollama_data(messages: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The data Ollama gives a template for a chat: every message, the system prompt, and
    the last user message as .Prompt."""
    system = "\n\n".join(str(m["content"]) for m in messages if m.get("role") == "system")
    users = [m for m in messages if m.get("role") == "user"]
    return {
        "System": system,
        "Prompt": str(users[-1]["content"]) if users else "",
        "Response": "",
        "Messages": [{"Role": m.get("role", ""), "Content": m.get("content", "")} for m in messages],
        "Tools": [],
    }


def render_chat(template: GoTemplate, messages: Sequence[dict[str, Any]]) -> str:
    """Render a conversation. Templates that range over .Messages render once; older ones
    (.System/.Prompt/.Response only) render turn by turn, as Ollama does."""
    if ".Messages" in template.source:
        return template.render(ollama_data(messages))
    system = "\n\n".join(str(m["content"]) for m in messages if m.get("role") == "system")
    turns: list[tuple[str, str]] = []
    for m in messages:
        if m.get("role") == "user":
            turns.append((str(m["content"]), ""))
        elif m.get("role") == "assistant" and turns:
            turns[-1] = (turns[-1][0], str(m["content"]))
    if not turns:
        turns = [("", "")]
    parts = []
    for i, (prompt, response) in enumerate(turns):
        last = i == len(turns) - 1
        data = {
            "System": system if i == 0 else "",
            "Prompt": prompt,
            "Response": "" if last else response,
            "Messages": [],
            "Tools": [],
        }
        parts.append(template.render(data))
    return "".join(parts)
