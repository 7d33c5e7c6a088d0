"""JSON Schemas for structured output: checked in the API process, before any model runs.

The worker turns a checked schema into a llama.cpp grammar (GBNF, with llama-cpp-python's
converter) that constrains sampling, so the output always parses and follows the schema.
What the converter cannot enforce is refused here with a 400 naming the keyword, never
accepted and silently ignored. Integer bounds (``minimum``/``maximum`` and the exclusive
forms) become an ``enum`` of the allowed values when the range is small enough to list.

Repetition bounds (``minLength``/``maxLength``, ``minItems``/``maxItems`` and ``{n,m}`` in a
``pattern``) are what a grammar's size grows with: the converter writes one nested optional
group per allowed repetition, and llama.cpp's grammar parser recurses once per group (a
single ``maxLength`` near 17,000 overflows its stack and kills the worker, measured with
llama-cpp-python 0.3). So each bound is capped (``MAX_REPEAT``), their sum is capped
(``MAX_GRAMMAR_REPEATS``), and once the request's token budget is known no bound may exceed
it (:func:`fit_budget`): a maximum above it is lowered to it (the answer still follows the
caller's schema, and a cheap request cannot buy a large grammar), while a minimum or a
pattern count above it is refused, since an answer that must hold more items than it has
tokens cannot follow the schema anyway.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
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
REPEATS = ("minLength", "maxLength", "minItems", "maxItems")
_SUBSCHEMAS = ("items", "additionalProperties", "anyOf", "oneOf", "allOf", "prefixItems")
MAX_REPEAT = 8192  # any one repetition bound (llama.cpp's parser: ~17,000 overflows its stack)
MAX_GRAMMAR_REPEATS = 32768  # all bounds and enum values of one schema together
_QUANTIFIER = re.compile(r"\{(\d+)(,?)(\d*)\}")


def check_schema(schema: Any, field: str) -> str:
    """The schema as canonical JSON text, ready for the worker; InvalidRequest naming
    ``field`` and the offending keyword when it cannot be enforced."""
    import jsonschema

    if not isinstance(schema, dict):
        raise InvalidRequest(f"{field}: a JSON schema must be an object")
    try:
        with warnings.catch_warnings():  # re's warnings on a strange pattern ("[[") are not errors:
            warnings.simplefilter("ignore")  # the check's verdict on it is what counts
            jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise InvalidRequest(f"{field}: not a valid JSON schema: {exc.message}") from exc
    normalized = _normalize(schema, field, 0)
    text = json.dumps(normalized)  # key order kept: properties come out in it
    if len(text) > MAX_SCHEMA_BYTES:
        raise InvalidRequest(f"{field}: the schema is larger than {MAX_SCHEMA_BYTES} bytes")
    total = 0
    for where, keyword, value in _repeats(normalized, field):
        if value > MAX_REPEAT:
            raise InvalidRequest(f"{where}.{keyword}: {value} is above the limit of {MAX_REPEAT} repetitions")
        total += value
    if total > MAX_GRAMMAR_REPEATS:
        raise InvalidRequest(
            f"{field}: the schema's repetition bounds and enum values add up to {total}, "
            f"above the limit of {MAX_GRAMMAR_REPEATS}"
        )
    return text


def fit_budget(schema_text: str, max_tokens: int) -> str:
    """A checked schema fitted to the request's token budget: ``maxLength``/``maxItems``
    above it lowered to it; a minimum or a pattern count above it refused, naming it."""
    schema = json.loads(schema_text)
    for where, keyword, value in _repeats(schema, "schema"):
        if keyword in ("minLength", "minItems", "pattern") and value > max_tokens:
            raise InvalidRequest(
                f"{where}.{keyword}: {value} is above the request's token budget "
                f"(max_tokens {max_tokens}); lower the bound or raise max_tokens"
            )
    if all(value <= max_tokens for _, keyword, value in _repeats(schema, "schema") if keyword != "enum"):
        return schema_text
    _lower_maximums(schema, max_tokens)
    return json.dumps(schema)


def _lower_maximums(node: Any, limit: int) -> None:
    """Lower every maxLength/maxItems above ``limit``, where _repeats finds bounds (schema
    positions only: a ``const`` or ``enum`` value that looks like a schema is left alone)."""
    if isinstance(node, list):
        for item in node:
            _lower_maximums(item, limit)
        return
    if not isinstance(node, dict):
        return
    for keyword in ("maxLength", "maxItems"):
        if isinstance(node.get(keyword), int) and node[keyword] > limit:
            node[keyword] = limit
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for sub in value.values():
                _lower_maximums(sub, limit)
        elif key in _SUBSCHEMAS:
            _lower_maximums(value, limit)


def _repeats(node: Any, where: str) -> Iterator[tuple[str, str, int]]:
    """Every repetition bound of a normalized schema: (where, keyword, value); enums count
    their values (keyword "enum"), patterns their quantifiers (keyword "pattern")."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _repeats(item, f"{where}[{i}]")
        return
    if not isinstance(node, dict):
        return
    for keyword in REPEATS:
        if isinstance(node.get(keyword), int):
            yield where, keyword, node[keyword]
    if isinstance(node.get("enum"), list):
        yield where, "enum", len(node["enum"])
    if isinstance(node.get("pattern"), str):
        for low, comma, high in _QUANTIFIER.findall(node["pattern"]):
            yield where, "pattern", max(int(low), int(high) if high else 0) + (1 if comma and not high else 0)
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
            for name, sub in value.items():
                yield from _repeats(sub, f"{where}.{key}.{name}")
        elif key in _SUBSCHEMAS:
            yield from _repeats(value, f"{where}.{key}")


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


def openai_format(kind: Any, schema: Any, *, type_field: str, schema_field: str) -> str | None:
    """The schema an OpenAI-style output format asks for (Chat Completions'
    ``response_format``, Responses' ``text.format``): "text" none, "json_object" any JSON
    object, "json_schema" ``schema``, checked. Errors name ``type_field`` / ``schema_field``."""
    if kind == "text":
        return None
    if kind == "json_object":
        return json_object_schema()
    if kind == "json_schema":
        if not isinstance(schema, dict):
            raise InvalidRequest(f"{schema_field}: a JSON schema object is required")
        return check_schema(schema, schema_field)
    raise InvalidRequest(f"{type_field}: {kind!r} is not one of text, json_object, json_schema")
