"""Structured-output schemas: what is enforced, what is refused (and named), what is rewritten."""

from __future__ import annotations

import json

import pytest

from slmkit.engine.schema import MAX_ENUM_RANGE, check_schema
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
