"""JSON Schemas for structured output: checked in the API process, before any model runs.

The worker turns a checked schema into a llama.cpp grammar (GBNF, with llama-cpp-python's
converter) that constrains sampling, so the output always parses and follows the schema.
What the converter cannot enforce is refused here with a 400 naming the keyword, never
accepted and silently ignored. Integer bounds (``minimum``/``maximum`` and the exclusive
forms) become an ``enum`` of the allowed values when the range is small enough to list.
"""

from __future__ import annotations

import json
from typing import Any

from slmkit.errors import InvalidRequest

# Keywords the grammar enforces.
ENFORCED = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems",
    "minItems", "maxItems", "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs",
    "definitions", "minLength", "maxLength", "pattern", "format",
}  # fmt: skip
# Keywords that describe and constrain nothing.
ANNOTATIONS = {
    "title", "description", "default", "examples", "$schema", "$id", "$comment",
    "deprecated", "readOnly", "writeOnly", "strict",
}  # fmt: skip
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
FORMATS = {"date", "time", "date-time", "uuid"}  # string formats the converter enforces
MAX_ENUM_RANGE = 1000  # integer ranges up to this many values become an enum
MAX_SCHEMA_BYTES = 64 * 1024
MAX_DEPTH = 16


def check_schema(schema: Any, field: str) -> str:
    """The schema as canonical JSON text, ready for the worker; InvalidRequest naming
    ``field`` and the offending keyword when it cannot be enforced."""
    import jsonschema

    if not isinstance(schema, dict):
        raise InvalidRequest(f"{field}: a JSON schema must be an object")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"{field}: not a valid JSON schema: {exc.message}") from exc
    text = json.dumps(_normalize(schema, field, 0))  # key order kept: properties come out in it
    if len(text) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"{field}: the schema is larger than {MAX_SCHEMA_BYTES} bytes")
    return text


def _normalize(node: Any, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise InvalidRequest(f"{where}: the schema nests deeper than {MAX_DEPTH} levels")
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        raise InvalidRequest(f"{where}: expected a schema object")
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ANNOTATIONS:
            continue
        if key in BOUNDS:
            continue  # handled below
        if key not in ENFORCED:
            raise InvalidRequest(f"{where}.{key}: not supported in structured output (it cannot be enforced)")
        out[key] = value
    if "$ref" in out and not str(out["$ref"]).startswith("#/"):
        raise InvalidRequest(f"{where}.$ref: only local references (#/...) are supported")
    if "format" in out and out["format"] not in FORMATS:
        raise InvalidRequest(
            f"{where}.format: {out['format']!r} is not enforced (supported: {sorted(FORMATS)})"
        )
    if "pattern" in out and not (str(out["pattern"]).startswith("^") and str(out["pattern"]).endswith("$")):
        raise InvalidRequest(f"{where}.pattern: must be anchored with ^ and $")
    if any(b in node for b in BOUNDS):
        out = _bounded(node, out, where)
    for key in ("properties", "$defs", "definitions"):
        if isinstance(out.get(key), dict):
            out[key] = {k: _normalize(v, f"{where}.{key}.{k}", depth + 1) for k, v in out[key].items()}
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [_normalize(v, f"{where}.{key}[{i}]", depth + 1) for i, v in enumerate(out[key])]
    for key in ("items", "additionalProperties"):
        if isinstance(out.get(key), dict):
            out[key] = _normalize(out[key], f"{where}.{key}", depth + 1)
    return out


def _bounded(node: dict[str, Any], out: dict[str, Any], where: str) -> dict[str, Any]:
    if node.get("type") != "integer":
        raise InvalidRequest(
            f"{where}: minimum/maximum are enforced on integers only (type {node.get('type')!r})"
        )
    low = node.get("minimum", node["exclusiveMinimum"] + 1 if "exclusiveMinimum" in node else None)
    high = node.get("maximum", node["exclusiveMaximum"] - 1 if "exclusiveMaximum" in node else None)
    if low is None or high is None or high - low + 1 > MAX_ENUM_RANGE:
        raise InvalidRequest(
            f"{where}: integer bounds are enforced for ranges of up to {MAX_ENUM_RANGE} values "
            "with both a minimum and a maximum"
        )
    if high < low:
        raise InvalidRequest(f"{where}: minimum is above maximum")
    out.pop("type", None)
    out["enum"] = list(range(int(low), int(high) + 1))
    return out


def json_object_schema() -> str:
    """OpenAI's ``json_object`` and Ollama's ``"json"``: any JSON object."""
    return json.dumps({"type": "object"})
