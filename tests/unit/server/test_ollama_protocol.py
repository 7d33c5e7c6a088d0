"""The pure conversions of the Ollama adapter, without a server."""

from __future__ import annotations

import pytest

from slmkit.engine.types import GenerationStats
from slmkit.errors import InvalidRequest
from slmkit.server.generation import Done
from slmkit.server.ollama import protocol as p


def test_defaults_are_ollamas() -> None:
    s = p.sampling_from_options({}, None)
    assert (s.temperature, s.top_k, s.top_p, s.repeat_penalty, s.repeat_last_n, s.max_tokens) == (
        0.8,
        40,
        0.9,
        1.1,
        64,
        None,
    )


def test_model_params_then_request_options() -> None:
    s = p.sampling_from_options({"temperature": 0.1, "stop": ["A"]}, {"temperature": 0.5, "num_predict": 7})
    assert (s.temperature, s.stop, s.max_tokens) == (0.5, ("A",), 7)


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
        {"stop": "x" * 0 or 5},
        {"num_predict": -3},
        {"num_predict": 1.5},
        {"temperature": None, "mirostat": 1},
        {"num_ctx": 2048},
        {"bogus": 1},
    ],
)
def test_bad_options(options: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="options"):
        p.sampling_from_options({}, options)


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
