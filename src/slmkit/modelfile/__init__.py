"""Modelfiles, Ollama's recipe format: parse, render (round-trips), and render a stored model.

    # comments start with a hash
    FROM smollm2:135m                 (a store name, a local .gguf path, or a pull reference)
    PARAMETER temperature 0.2         (repeatable; `stop` may repeat)
    SYSTEM \"\"\"You are terse.\"\"\"       (triple quotes span lines)
    TEMPLATE \"\"\"{{ .Prompt }}\"\"\"
    MESSAGE user Hi                   (few-shot history: system, user, assistant)
    ADAPTER ./lora.gguf
    LICENSE \"\"\"MIT\"\"\"
    REQUIRES 0.5.0

Instructions are case-insensitive; every error names its line. PARAMETER names, types and
checks come from the one parameter table (answer/parameters.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from slmkit.answer import parameters
from slmkit.errors import InvalidRequest, ModelfileError

INSTRUCTIONS = ("FROM", "PARAMETER", "TEMPLATE", "SYSTEM", "ADAPTER", "LICENSE", "MESSAGE", "REQUIRES")
ROLES = ("system", "user", "assistant")


@dataclass
class Modelfile:
    from_: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)  # stop is a list
    template: str | None = None
    system: str | None = None
    adapters: list[str] = field(default_factory=list)
    license: list[str] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    requires: str | None = None


def _tokens(text: str) -> list[tuple[int, str, str]]:
    """(line number, instruction, raw rest) for each instruction; a value opened with
    triple quotes continues over the following lines until they close."""
    out: list[tuple[int, str, str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() not in INSTRUCTIONS:
            raise ModelfileError(f"line {number}: unknown instruction {word!r}")
        rest = rest.strip()
        while rest.count('"""') == 1:
            if i >= len(lines):
                raise ModelfileError(f'line {number}: unterminated """ string')
            rest += "\n" + lines[i]
            i += 1
        out.append((number, word.upper(), rest))
    return out


def _unquote(value: str, number: int) -> str:
    if value.startswith('"""'):
        inner, _, after = value[3:].partition('"""')
        if after.strip():
            raise ModelfileError(f'line {number}: unexpected text after closing """')
        return inner
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        try:
            decoded: str = json.loads(value)
            return decoded
        except ValueError:
            return value[1:-1]
    return value


def parse(text: str) -> Modelfile:
    m = Modelfile()
    for number, word, rest in _tokens(text):
        if word == "FROM":
            if m.from_:
                raise ModelfileError(f"line {number}: FROM may appear only once")
            m.from_ = _unquote(rest, number).strip()
        elif word in {"PARAMETER", "MESSAGE"}:
            head, _, tail = rest.partition(" ")
            value = _unquote(tail.lstrip(), number)
            if word == "MESSAGE":
                if head.lower() not in ROLES:
                    raise ModelfileError(f"line {number}: MESSAGE role must be one of {', '.join(ROLES)}")
                m.messages.append({"role": head.lower(), "content": value})
                continue
            if not head or not value:
                raise ModelfileError(f"line {number}: PARAMETER needs a name and a value")
            try:
                parameters.add_line(m.parameters, head, value)
            except InvalidRequest as exc:
                raise ModelfileError(f"line {number}: {exc}") from exc
        elif word == "TEMPLATE":
            m.template = _unquote(rest, number)
        elif word == "SYSTEM":
            m.system = _unquote(rest, number)
        elif word == "ADAPTER":
            m.adapters.append(_unquote(rest, number).strip())
        elif word == "LICENSE":
            m.license.append(_unquote(rest, number))
        elif word == "REQUIRES":
            m.requires = _unquote(rest, number).strip()
    if not m.from_:
        raise ModelfileError("a Modelfile needs a FROM line")
    return m


def _quote(text: str) -> str:
    if '"""' in text:
        raise InvalidRequest('a value containing """ cannot be written to a Modelfile')
    return f'"""{text}"""'


def render_modelfile(m: Modelfile) -> str:
    """Text that parses back to ``m``."""
    lines = [f"FROM {m.from_}"]
    for key, value in m.parameters.items():
        for item in value if isinstance(value, list) else [value]:
            shown = (
                json.dumps(item)
                if isinstance(item, str)
                else str(item).lower()
                if isinstance(item, bool)
                else str(item)
            )
            lines.append(f"PARAMETER {key} {shown}")
    if m.template is not None:
        lines.append(f"TEMPLATE {_quote(m.template)}")
    if m.system is not None:
        lines.append(f"SYSTEM {_quote(m.system)}")
    lines += [f"ADAPTER {a}" for a in m.adapters]
    lines += [f"LICENSE {_quote(text)}" for text in m.license]
    lines += [f"MESSAGE {msg['role']} {_quote(msg['content'])}" for msg in m.messages]
    if m.requires:
        lines.append(f"REQUIRES {m.requires}")
    return "\n".join(lines) + "\n"


def render(record: Any) -> str:
    """The Modelfile that recreates a stored model (``slm show --modelfile``)."""
    name = record.name.display
    m = Modelfile(
        from_=name,
        parameters=dict(record.params),
        template=record.template,
        system=record.system,
        messages=list(getattr(record, "messages", []) or []),
    )
    header = [
        '# Modelfile generated by "slm show"',
        "# To build a new Modelfile based on this one, replace the FROM line with:",
        f"# FROM {name}",
        "",
    ]
    return "\n".join(header) + render_modelfile(m)
