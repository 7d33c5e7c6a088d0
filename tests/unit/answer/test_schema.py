"""Structured-output schemas: what is enforced, what is refused (and named), what is rewritten."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slmkit.answer.schema import MAX_ENUM_RANGE, MAX_GRAMMAR_REPEATS, MAX_REPEAT, check_schema, fit_budget
from slmkit.errors import InvalidRequest


def test_enforced_keywords_pass_and_annotations_are_dropped_keeping_key_order() -> None:
    schema = {
        "title": "Person",
        "type": "object",
        "properties": {
            "name": {"type": "string", "description": "full name", "maxLength": 30},
            "age": {"type": "integer", "minimum": 0, "maximum": 3},
            "kind": {"enum": ["a", "b"]},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": 3},
            "when": {"type": "string", "format": "date"},
            "nested": {"$ref": "#/$defs/N"},
        },
        "required": ["name"],
        "additionalProperties": False,
        "$defs": {"N": {"type": "object", "properties": {"x": {"type": "boolean"}}}},
    }
    out = json.loads(check_schema(schema, "format"))
    assert "title" not in out and "description" not in out["properties"]["name"]
    assert list(out["properties"]) == ["name", "age", "kind", "tags", "when", "nested"]
    assert out["properties"]["age"] == {"enum": [0, 1, 2, 3]}
    exclusive = json.loads(
        check_schema({"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 3}, "f")
    )
    assert exclusive == {"enum": [1, 2]}


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ([], "must be an object"),
        ({"type": "strin"}, "not a valid JSON schema"),
        ({"type": "object", "patternProperties": {"^a$": {}}}, "format.patternProperties: not supported"),
        (
            {"properties": {"a": {"type": "number", "minimum": 0}}},
            "format.properties.a: minimum/maximum are enforced on integers",
        ),
        ({"type": "integer", "minimum": 0}, "both a minimum and a maximum"),
        ({"type": "integer", "minimum": 0, "maximum": MAX_ENUM_RANGE}, f"up to {MAX_ENUM_RANGE} values"),
        ({"type": "integer", "minimum": 3, "maximum": 1}, "minimum is above maximum"),
        ({"type": "string", "format": "email"}, "'email' is not enforced"),
        ({"type": "string", "pattern": "a+"}, "anchored"),
        ({"$ref": "https://example.com/s.json"}, "only local references"),
        ({"type": "array", "uniqueItems": True}, "uniqueItems: not supported"),
        ({"not": {"type": "string"}}, "not: not supported"),
    ],
)
def test_what_cannot_be_enforced_is_refused_naming_the_keyword(schema: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(").replace("$", r"\$")):
        check_schema(schema, "format")


def test_depth_and_size_are_bounded() -> None:
    deep: dict[str, object] = {"type": "string"}
    for _ in range(20):
        deep = {"type": "array", "items": deep}
    with pytest.raises(InvalidRequest, match="deeper than"):
        check_schema(deep, "format")
    wide = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "maxLength": 5} for i in range(3000)},
    }
    with pytest.raises(InvalidRequest, match="larger than"):
        check_schema(wide, "format")


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "string", "maxLength": 100_000}, r"format.maxLength: 100000 is above the limit of 8192"),
        ({"type": "array", "items": {"type": "integer"}, "minItems": 9000}, r"format.minItems: 9000"),
        ({"type": "string", "pattern": "^a{1,20000}$"}, r"format.pattern: 20000"),
        ({"type": "string", "pattern": "^a{30000,}$"}, r"format.pattern: 30001"),
        (
            {"properties": {f"p{i}": {"type": "string", "maxLength": 8000} for i in range(5)}},
            r"add up to 40000, above the limit of 32768",
        ),
    ],
)
def test_repetition_bounds_are_capped_before_a_grammar_is_built(schema: object, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_schema(schema, "format")


def test_no_bound_may_exceed_the_token_budget() -> None:
    """Maximums above the budget are lowered to it (the answer still follows the caller's
    schema); minimums and pattern counts above it cannot be met: refused, naming them."""
    text = check_schema(
        {
            "properties": {
                "tags": {"type": "array", "maxItems": 500, "items": {"type": "string", "maxLength": 300}},
                "fixed": {"const": {"maxLength": 999}},  # a value, not a bound: left alone
            }
        },
        "format",
    )
    assert fit_budget(text, 500) == text  # within the budget: unchanged
    fitted = json.loads(fit_budget(text, 299))["properties"]
    assert fitted["tags"]["maxItems"] == 299 and fitted["tags"]["items"]["maxLength"] == 299
    assert fitted["fixed"]["const"] == {"maxLength": 999}
    long = check_schema({"type": "string", "minLength": 300}, "format")
    with pytest.raises(InvalidRequest, match=r"schema.minLength: 300 .*max_tokens 299"):
        fit_budget(long, 299)
    pattern = check_schema({"type": "string", "pattern": "^a{400}$"}, "format")
    with pytest.raises(InvalidRequest, match=r"schema.pattern: 400 .*max_tokens 299"):
        fit_budget(pattern, 299)
    enum = check_schema({"type": "integer", "minimum": 0, "maximum": 999}, "format")
    assert fit_budget(enum, 16) == enum  # enum values are not repetitions of the answer


@settings(max_examples=200, deadline=None)
@given(
    bounds=st.lists(st.integers(min_value=0, max_value=40_000), min_size=1, max_size=6),
    budget=st.integers(min_value=1, max_value=10_000),
)
def test_property_accepted_schemas_stay_within_every_limit(bounds: list[int], budget: int) -> None:
    """Whatever the bounds, a schema that passes both checks has every bound within the
    per-bound cap and the token budget, and all of them within the total."""
    from slmkit.answer.schema import _repeats

    schema = {
        "type": "object",
        "properties": {
            f"p{i}": ({"type": "string", "maxLength": b} if i % 2 else {"type": "array", "maxItems": b})
            for i, b in enumerate(bounds)
        },
    }
    try:
        fitted = json.loads(fit_budget(check_schema(schema, "format"), budget))
    except InvalidRequest:
        assert max(bounds) > MAX_REPEAT or sum(bounds) > MAX_GRAMMAR_REPEATS
    else:
        assert max(bounds) <= MAX_REPEAT and sum(bounds) <= MAX_GRAMMAR_REPEATS
        assert all(v <= budget for _, _, v in _repeats(fitted, "schema"))


def test_a_pattern_that_makes_re_warn_is_refused_not_an_error() -> None:
    """`[[` makes re warn (FutureWarning: possible nested set); warnings are errors in the test
    run, and once were a 500 (found by tests/unit/server/test_text_fields.py's hypothesis)."""
    import warnings

    from slmkit.answer.schema import check_schema
    from slmkit.errors import InvalidRequest

    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "[["}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidRequest, match="not a valid JSON schema"):
            check_schema(schema, "response_format.json_schema.schema")
