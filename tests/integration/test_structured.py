"""Structured output against the real model: for every schema x prompt, through the official
openai client (response_format json_schema) and the official ollama client (format), the
answer parses and validates against the schema (jsonschema), greedy and sampled."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import ollama
import openai
import pytest

from tests.integration.conftest import MODEL, Server

pytestmark = pytest.mark.integration
NAME = {"type": "string", "minLength": 1, "maxLength": 24}
AGE = {"type": "integer", "minimum": 0, "maximum": 120}
RANK = {"type": "integer", "minimum": 1, "maximum": 5}
YEAR = {"type": "integer", "minimum": 1900, "maximum": 2030}
SCHEMAS: dict[str, dict[str, Any]] = {
    "object": {
        "type": "object",
        "properties": {"name": NAME, "age": AGE, "member": {"type": "boolean"}},
        "required": ["name", "age", "member"],
        "additionalProperties": False,
    },
    "array": {
        "type": "array",
        "items": {"type": "object", "properties": {"city": NAME, "rank": RANK}, "required": ["city", "rank"]},
        "minItems": 1,
        "maxItems": 3,
    },
    "enum": {
        "type": "object",
        "properties": {"mood": {"enum": ["happy", "sad", "neutral"]}},
        "required": ["mood"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "book": {
                "type": "object",
                "properties": {"title": NAME, "year": YEAR},
                "required": ["title", "year"],
            },
            "tags": {"type": "array", "items": {"enum": ["fiction", "history", "science"]}, "maxItems": 2},
            "note": {"anyOf": [NAME, {"type": "null"}]},
        },
        "required": ["book", "tags", "note"],
    },
    "formats": {
        "type": "object",
        "properties": {
            "day": {"type": "string", "format": "date"},
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
        },
        "required": ["day", "code"],
    },
}
PROMPTS = [
    "Describe a person.",
    "Give me data about a trip to Paris.",
    "Answer in JSON, please: what do you like?",
]


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_openai_json_schema_outputs_always_validate(server: Server, name: str) -> None:
    schema = SCHEMAS[name]
    rf = {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        for i, prompt in enumerate(PROMPTS):
            r = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": prompt}],
                response_format=rf,  # type: ignore[arg-type]
                max_tokens=256,
                temperature=0 if i == 0 else 0.9,
                seed=i,
            )
            text = r.choices[0].message.content or ""
            assert r.choices[0].finish_reason == "stop", text
            jsonschema.validate(json.loads(text), schema)


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_ollama_format_outputs_always_validate(server: Server, name: str) -> None:
    schema = SCHEMAS[name]
    client = ollama.Client(host=server.url)
    try:
        for i, prompt in enumerate(PROMPTS):
            r = client.chat(
                model=MODEL,
                messages=[{"role": "user", "content": prompt}],
                format=schema,
                options={"num_predict": 256, "temperature": 0 if i == 0 else 0.9, "seed": i},
            )
            assert r.done_reason == "stop", r.message.content
            jsonschema.validate(json.loads(r.message.content or ""), schema)
    finally:
        client._client.close()


def test_json_mode_and_streaming(server: Server) -> None:
    schema = SCHEMAS["object"]
    rf = {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        pieces = [
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "Describe a person."}],
                response_format=rf,  # type: ignore[arg-type]
                max_tokens=256,
                stream=True,
            )
            if c.choices
        ]
        jsonschema.validate(json.loads("".join(pieces)), schema)
        # json_object has no bounds: a finished answer parses; one cut by max_tokens may not
        for seed in range(3):
            r = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "List three fruits."}],
                response_format={"type": "json_object"},
                max_tokens=300,
                seed=seed,
            )
            text = r.choices[0].message.content or ""
            assert text.lstrip().startswith("{")
            if r.choices[0].finish_reason == "stop":
                assert isinstance(json.loads(text), dict)
    client2 = ollama.Client(host=server.url)
    try:
        out = client2.generate(model=MODEL, prompt="A color?", format="json", options={"num_predict": 300})
        assert out.response.lstrip().startswith("{")
        if out.done_reason == "stop":
            assert isinstance(json.loads(out.response), dict)
        with pytest.raises(ollama.ResponseError) as info:
            client2.generate(model=MODEL, prompt="x", format={"type": "number", "minimum": 1})
        assert info.value.status_code == 400 and "integers" in str(info.value)
    finally:
        client2._client.close()
