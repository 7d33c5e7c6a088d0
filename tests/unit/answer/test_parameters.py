"""The one parameter table: types, checks, and the precedence request > model > default."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from slmkit import modelfile
from slmkit.answer import parameters as params
from slmkit.errors import InvalidRequest, LimitExceeded, ModelfileError
from slmkit.pipe import SamplingParams

# A value for each sampling parameter that differs from its default, and another one.
MODEL_VALUE: dict[str, Any] = {
    "temperature": 0.3,
    "top_k": 7,
    "top_p": 0.5,
    "min_p": 0.2,
    "repeat_penalty": 1.3,
    "repeat_last_n": 32,
    "presence_penalty": 0.4,
    "frequency_penalty": 0.6,
    "seed": 11,
    "stop": ("END",),
    "num_predict": 5,
}
REQUEST_VALUE: dict[str, Any] = {
    "temperature": 1.5,
    "top_k": 3,
    "top_p": 0.7,
    "min_p": 0.1,
    "repeat_penalty": 1.2,
    "repeat_last_n": 16,
    "presence_penalty": -0.5,
    "frequency_penalty": 0.2,
    "seed": 99,
    "stop": ("STOP", "HALT"),
    "num_predict": 9,
}


def resolve(model: dict[str, Any], request: dict[str, Any], **kw: Any) -> SamplingParams:
    limits = {"default_max_tokens": 100, "max_tokens": 1000, "max_stop": 4} | kw
    return params.resolve(model, request, base=SamplingParams(logprobs=2), **limits)


def test_the_table_names_real_fields_and_covers_every_sampling_field() -> None:
    fields = {f.name for f in dataclasses.fields(SamplingParams)}
    assert len({p.name for p in params.PARAMETERS}) == len(params.PARAMETERS)
    mapped = {p.field for p in params.SAMPLING}
    assert mapped <= fields
    # the rest are request-only (set by a dialect, never by a model)
    assert fields - mapped == {
        "ignore_eos",
        "logprobs",
        "prompt_logprobs",
        "json_schema",
        "logit_bias",
        "context_window",
    }
    assert set(MODEL_VALUE) == set(REQUEST_VALUE) == {p.name for p in params.SAMPLING}


@pytest.mark.parametrize("name", sorted(MODEL_VALUE))
def test_precedence_request_then_model_then_default(name: str) -> None:
    field = params.BY_NAME[name].field
    assert field is not None
    default = resolve({}, {})
    from_model = resolve({name: MODEL_VALUE[name]}, {})
    from_request = resolve({name: MODEL_VALUE[name]}, {name: REQUEST_VALUE[name]})
    expected_default = params.BY_NAME[name].default if name != "num_predict" else 100
    assert getattr(default, field) == expected_default
    assert getattr(from_model, field) == MODEL_VALUE[name]
    assert getattr(from_request, field) == REQUEST_VALUE[name]
    assert from_request.logprobs == 2  # the request-only fields come through


def test_max_tokens_default_and_cap() -> None:
    assert resolve({}, {}).max_tokens == 100  # SLM_DEFAULT_MAX_TOKENS
    assert resolve({"num_predict": -1}, {}).max_tokens == 100
    assert resolve({"num_predict": 5000}, {}).max_tokens == 1000  # a model's own value is capped
    assert resolve({}, {"num_predict": -2}).max_tokens == 1000  # fill the context: up to the cap
    with pytest.raises(LimitExceeded, match="SLM_MAX_TOKENS"):
        resolve({}, {"num_predict": 1001})
    with pytest.raises(LimitExceeded, match="SLM_MAX_STOP"):
        resolve({}, {"stop": ("a", "b", "c", "d", "e")})


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("temperature", "0.5", 0.5),
        ("temperature", 1, 1.0),
        ("top_k", "12", 12),
        ("top_k", 12.0, 12),
        ("seed", -1, None),
        ("stop", "x", ("x",)),
        ("stop", ["a", "", "b"], ("a", "b")),
        ("use_mmap", "true", True),
        ("num_ctx", 2048, 2048),
        ("typical_p", 1, 1.0),
    ],
)
def test_convert(name: str, value: Any, expected: Any) -> None:
    assert params.convert(name, value) == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("temperature", "hot"),
        ("temperature", float("inf")),
        ("temperature", True),
        ("top_k", 1.5),
        ("top_p", 0),
        ("num_predict", 0),
        ("num_ctx", 4),
        ("num_parallel", 65),
        ("mirostat", 2),
        ("use_mmap", "maybe"),
        ("stop", [1]),
        ("bogus", 1),
    ],
)
def test_convert_refuses_naming_the_parameter(name: str, value: Any) -> None:
    with pytest.raises(InvalidRequest, match=f"x.{name}"):
        params.convert(name, value, "x.")


def test_a_requests_num_ctx_is_its_context_window_and_num_parallel_is_dropped() -> None:
    assert params.request_options({"num_parallel": 2, "temperature": 0}) == {"temperature": 0.0}
    asked = params.request_options({"num_ctx": 512})
    limits = {"default_max_tokens": 64, "max_tokens": 128, "max_stop": 4}
    assert params.resolve({}, asked, base=SamplingParams(), **limits).context_window == 512
    # a model's num_ctx shaped its load: it is not a request's window
    assert params.resolve({"num_ctx": 512}, {}, base=SamplingParams(), **limits).context_window is None
    with pytest.raises(InvalidRequest, match=r"options\.num_ctx"):
        params.request_options({"num_ctx": 4})


def test_modelfile_parameters_come_from_the_table() -> None:
    m = modelfile.parse(
        "FROM x\nPARAMETER stop A\nPARAMETER stop B\nPARAMETER TEMPERATURE 0\nPARAMETER seed -1\n"
    )
    assert m.parameters == {"stop": ["A", "B"], "temperature": 0.0}
    with pytest.raises(ModelfileError, match="line 2: parameter bogus: unknown"):
        modelfile.parse("FROM x\nPARAMETER bogus 1\n")
    with pytest.raises(ModelfileError, match="line 2: parameter top_p: must be"):
        modelfile.parse("FROM x\nPARAMETER top_p 7\n")


def test_layer_is_json_ready() -> None:
    assert params.layer({"stop": "x", "temperature": "0.2", "seed": -1}) == {
        "stop": ["x"],
        "temperature": 0.2,
    }
