"""Ollama-style Go templates rendered against expected prompts; unsupported or hostile input."""

from __future__ import annotations

import pytest

from slmkit.errors import TemplateError
from slmkit.gotemplate import GoTemplate, render_chat
from slmkit.template import ChatTemplate, is_jinja

CHAT = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello."},
    {"role": "user", "content": "2+2?"},
]

# The shape of Ollama's llama3.2 template (tools parts removed).
LLAMA32 = """<|start_header_id|>system<|end_header_id|>
{{ if .System }}{{ .System }}{{ end }}<|eot_id|>
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|start_header_id|>user<|end_header_id|>

{{ .Content }}<|eot_id|>{{ if $last }}<|start_header_id|>assistant<|end_header_id|>

{{ end }}
{{- else if eq .Role "assistant" }}<|start_header_id|>assistant<|end_header_id|>

{{ .Content }}{{ if not $last }}<|eot_id|>{{ end }}
{{- end }}
{{- end }}"""

# An older Modelfile template: one turn at a time.
LEGACY = (
    "{{ if .System }}<|system|>\n{{ .System }}</s>\n{{ end }}"
    "<|user|>\n{{ .Prompt }}</s>\n<|assistant|>\n{{ .Response }}"
)


def test_llama32_style_template() -> None:
    out = ChatTemplate(LLAMA32).render(CHAT)
    assert out == (
        "<|start_header_id|>system<|end_header_id|>\nBe brief.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_legacy_template_renders_turn_by_turn() -> None:
    out = ChatTemplate(LEGACY).render(CHAT)
    assert out == (
        "<|system|>\nBe brief.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello."
        "<|user|>\n2+2?</s>\n<|assistant|>\n"
    )


@pytest.mark.parametrize(
    ("source", "data", "expected"),
    [
        ("a {{- ' b' }}".replace("'", '"'), {}, "a b"),
        ("{{ .X -}}   \n  y", {"X": "x"}, "xy"),
        ('{{ if eq .A "1" }}one{{ else if eq .A "2" }}two{{ else }}many{{ end }}', {"A": "2"}, "two"),
        ("{{ range .L }}[{{ . }}]{{ end }}", {"L": [1, 2]}, "[1][2]"),
        ("{{ range $i, $v := .L }}{{ $i }}={{ $v }};{{ end }}", {"L": ["a", "b"]}, "0=a;1=b;"),
        (
            "{{ len .L }} {{ index .L 1 }} {{ and .T .F }} {{ or .F .T }} {{ not .F }}",
            {"L": [5, 6], "T": True, "F": False},
            "2 6 false true true",
        ),
        ("{{ $x := .A }}{{ $x }}{{ $.A }}", {"A": "q"}, "qq"),
        ("{{/* a comment */}}ok", {}, "ok"),
        ("{{ .Missing }}|{{ .A.B }}", {"A": {"B": "deep"}}, "|deep"),
    ],
)
def test_subset(source: str, data: dict[str, object], expected: str) -> None:
    assert GoTemplate(source).render(data) == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ if .A }}x",
        "{{ end }}",
        "{{ .A | printf }}",
        '{{ template "x" }}',
        "{{ with .A }}x{{ end }}",
        "{{ exec .A }}",
        "{{ call .Func }}",
        "{{ else }}",
    ],
)
def test_unsupported_or_broken_templates_are_template_errors(source: str) -> None:
    with pytest.raises(TemplateError):
        GoTemplate(source).render({"A": "a"})


def test_output_is_bounded() -> None:
    messages = [{"role": "user", "content": "x" * 100_000}] * 50
    with pytest.raises(TemplateError, match="size limit"):
        render_chat(GoTemplate("{{ range .Messages }}{{ .Content }}{{ .Content }}{{ end }}"), messages)


def test_detection() -> None:
    assert not is_jinja(LLAMA32) and not is_jinja(LEGACY)
    assert is_jinja("{% for m in messages %}{{ m.content }}{% endfor %}")
