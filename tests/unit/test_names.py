from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slmkit.errors import InvalidName
from slmkit.names import ModelName


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("smollm2", ("registry.ollama.ai", "library", "smollm2", "latest")),
        ("smollm2:135m", ("registry.ollama.ai", "library", "smollm2", "135m")),
        ("user/model", ("registry.ollama.ai", "user", "model", "latest")),
        ("user/model:q4_K_M", ("registry.ollama.ai", "user", "model", "q4_K_M")),
        ("hf.co/org/repo:Q4_K_M", ("hf.co", "org", "repo", "Q4_K_M")),
        ("localhost:5000/ns/m:1.0", ("localhost:5000", "ns", "m", "1.0")),
        ("a.b-c_d", ("registry.ollama.ai", "library", "a.b-c_d", "latest")),
    ],
)
def test_parse_valid(text: str, expected: tuple[str, str, str, str]) -> None:
    assert ModelName.parse(text) == ModelName(*expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        ":",
        "model:",
        ":tag",
        "../etc/passwd",
        "a/../b",
        "..",
        "a/b/c/d",
        "model:tag:extra",
        "mo del",
        "model\x00",
        "model\\x",
        "-model",
        ".hidden",
        "ns/.m",
        "model:-tag",
        "a" * 81,
        "m:" + "t" * 129,
        "/abs",
        "a//b",
        "évian",
        "host_/ns/m",
        "h:99999999/ns/m",
    ],
)
def test_parse_invalid(text: str) -> None:
    with pytest.raises(InvalidName):
        ModelName.parse(text)


def test_display_is_shortest_form() -> None:
    assert ModelName.parse("smollm2").display == "smollm2:latest"
    assert ModelName.parse("registry.ollama.ai/library/x:y").display == "x:y"
    assert ModelName.parse("user/x").display == "user/x:latest"
    assert ModelName.parse("hf.co/o/r:q").display == "hf.co/o/r:q"


_part = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
_tag = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}", fullmatch=True)


@given(_part, _part, _tag)
def test_display_round_trips(namespace: str, model: str, tag: str) -> None:
    name = ModelName.parse(f"{namespace}/{model}:{tag}")
    assert ModelName.parse(name.display) == name
    # every part is safe as a path component
    assert all(p not in {".", ".."} and "/" not in p for p in name.path_parts())


@given(st.text(max_size=60))
def test_parse_never_raises_anything_but_invalid_name(text: str) -> None:
    try:
        name = ModelName.parse(text)
    except InvalidName:
        return
    assert all(p not in {"", ".", ".."} and "/" not in p and "\\" not in p for p in name.path_parts())
