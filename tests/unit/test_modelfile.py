"""Modelfile parsing (table-driven, real-world files), round trips (property), errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slmkit.modelfile import Modelfile, ModelfileError, parse, render_modelfile

LLAMA3 = '''FROM llama3.2:1b
TEMPLATE """<|start_header_id|>system<|end_header_id|>

{{ .System }}<|eot_id|>{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>

{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>

"""
PARAMETER stop "<|start_header_id|>"
PARAMETER stop "<|end_header_id|>"
PARAMETER stop "<|eot_id|>"
PARAMETER num_ctx 8192
SYSTEM You are Mario from Super Mario Bros.
'''

MIXED_CASE = """from ./model.gguf
parameter Temperature 0.5
Parameter seed 42
message USER what is 2+2?
message assistant 4
adapter ./lora.gguf
license apache-2.0
requires 0.6.0
"""


def test_real_world_llama3_modelfile() -> None:
    m = parse(LLAMA3)
    assert m.from_ == "llama3.2:1b"
    assert m.parameters == {
        "stop": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        "num_ctx": 8192,
    }
    assert m.system == "You are Mario from Super Mario Bros."
    assert m.template is not None and "{{ range .Messages }}" in m.template and m.template.endswith("\n\n")


def test_instructions_are_case_insensitive() -> None:
    m = parse(MIXED_CASE)
    assert m.from_ == "./model.gguf"
    assert m.parameters == {"temperature": 0.5, "seed": 42}
    assert m.messages == [{"role": "user", "content": "what is 2+2?"}, {"role": "assistant", "content": "4"}]
    assert m.adapters == ["./lora.gguf"] and m.license == ["apache-2.0"] and m.requires == "0.6.0"


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("PARAMETER temperature 0.1", "needs a FROM"),
        ("FROM a\nFROM b", "line 2: FROM may appear only once"),
        ("FROM a\nBOGUS x", "line 2: unknown instruction"),
        ("FROM a\nPARAMETER temperature hot", "line 2: parameter temperature"),
        ("FROM a\nPARAMETER wibble 1", "line 2: parameter wibble: unknown parameter"),
        ("FROM a\nPARAMETER seed", "line 2: PARAMETER needs a name and a value"),
        ('FROM a\nSYSTEM """never closed\nstill open', 'line 2: unterminated """'),
        ("FROM a\nMESSAGE wizard hi", "line 2: MESSAGE role"),
        ('FROM a\nSYSTEM """x""" trailing', "line 2: unexpected text"),
        ("FROM a\nPARAMETER use_mmap maybe", "line 2: parameter use_mmap"),
    ],
)
def test_errors_name_the_line(text: str, error: str) -> None:
    with pytest.raises(ModelfileError, match=error):
        parse(text)


_text = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs",), blacklist_characters='"\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029'
    ),
    max_size=40,
)
_word = st.from_regex(r"[a-z0-9][a-z0-9:._/-]{0,20}", fullmatch=True)


@given(
    _word,
    st.fixed_dictionaries(
        {},
        optional={
            "temperature": st.floats(0, 2, allow_nan=False),
            "seed": st.integers(0, 2**31),
            "stop": st.lists(
                st.text(alphabet="abc<|>/ ", min_size=1, max_size=8).map(str.strip).filter(bool),
                min_size=1,
                max_size=3,
            ),
            "use_mmap": st.booleans(),
        },
    ),
    st.none() | _text,
    st.none() | _text,
    st.lists(
        st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": _text}),
        max_size=3,
    ),
)
def test_render_then_parse_round_trips(
    source: str,
    params: dict[str, object],
    system: str | None,
    template: str | None,
    messages: list[dict[str, str]],
) -> None:
    m = Modelfile(from_=source, parameters=params, system=system, template=template, messages=messages)
    assert parse(render_modelfile(m)) == m
