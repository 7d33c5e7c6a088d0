"""The pure conversions of the Ollama adapter, without a server."""

from __future__ import annotations

import pytest

from slmkit.answer.generation import Done
from slmkit.errors import InvalidRequest
from slmkit.pipe import GenerationStats
from slmkit.server.ollama import protocol as p


def test_options_are_checked_against_the_table() -> None:
    assert p.request_options({"temperature": 0.5, "num_predict": 7, "stop": "A", "tool_choice": "auto"}) == (
        ("temperature", 0.5),
        ("num_predict", 7),
        ("stop", ("A",)),
    )
    assert p.request_options({"num_thread": 4, "typical_p": 1.0, "seed": -1}) == (
        ("num_thread", 4),
        ("typical_p", 1.0),
    )


@pytest.mark.parametrize(
    "options",
    [
        {"temperature": -1},
        {"top_p": 0},
        {"top_p": 1.5},
        {"min_p": 2},
        {"top_k": -3},
        {"seed": "x"},
        {"seed": True},
        {"stop": 5},
        {"stop": ["x" * 1001]},
        {"num_predict": -3},
        {"num_predict": 0},
        {"num_predict": 1.5},
        {"temperature": float("nan")},
        {"temperature": None, "mirostat": 1},
        {"num_ctx": 8},
        {"bogus": 1},
    ],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="options"):
        p.request_options(options)


def test_chat_request_carries_options_think_and_tools() -> None:
    req = p.ChatRequest.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi"}],
            "options": {"temperature": 0, "tool_choice": "required"},
            "think": "high",
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        }
    )
    engine = p.from_ollama_chat(req, "rid")
    assert engine.options == (("temperature", 0.0),)
    assert engine.think == "high" and [t.name for t in engine.tools] == ["f"]
    assert engine.tool_choice is not None and engine.tool_choice.mode == "required"
    with pytest.raises(InvalidRequest, match="think"):
        p.from_ollama_chat(req.model_copy(update={"think": "very"}), "rid")


def test_done_fields_in_nanoseconds() -> None:
    done = Done("m", "stop", GenerationStats(4, 2, 0.5, 1.25), load_seconds=0.25, total_seconds=2.0)
    fields = p.done_fields(done)
    assert fields["total_duration"] == 2_000_000_000
    assert fields["load_duration"] == 250_000_000
    assert fields["prompt_eval_duration"] == 500_000_000
    assert fields["eval_duration"] == 1_250_000_000
    assert (fields["prompt_eval_count"], fields["eval_count"], fields["done_reason"]) == (4, 2, "stop")


def test_parameters_text() -> None:
    assert p.parameters_text({"stop": ["a", "b"], "temperature": 0.2}).splitlines() == [
        'stop                           "a"',
        'stop                           "b"',
        "temperature                    0.2",
    ]
