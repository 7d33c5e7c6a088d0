"""Run by tests/integration/test_isolated_frameworks.py in instructor's own virtual
environment (its pins conflict with the suite's openai): structured extraction through
slmkit in instructor's two modes. Prints one JSON line per mode."""

import json
import sys

import instructor
from openai import OpenAI
from pydantic import BaseModel


class City(BaseModel):
    name: str
    country: str


base_url, model = sys.argv[1], sys.argv[2]
client = OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
for mode in (instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA):
    city = instructor.from_openai(client, mode=mode).chat.completions.create(
        model=model,
        response_model=City,
        max_retries=0,
        temperature=0,
        max_tokens=64,
        messages=[{"role": "user", "content": "Paris is the capital of France. Extract the city."}],
    )
    print(json.dumps({"mode": mode.value, "city": city.model_dump()}))
