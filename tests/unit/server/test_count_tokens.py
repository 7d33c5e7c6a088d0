"""Counting before sending: Anthropic's `POST /v1/messages/count_tokens` and the Responses
API's `POST /v1/responses/input_tokens` answer exactly the prompt tokens that generating the
same request reports (template, system, tools, a previous response's conversation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from slmkit.store import ModelStore
from tests.unit.server.fakes import FakeWorkers

TOOL = {"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}  # fmt: skip


@pytest.fixture(autouse=True)
def tall(workers: FakeWorkers) -> None:
    workers.n_ctx = 4096


@pytest.mark.parametrize(
    "extra",
    [{}, {"system": "Be terse."}, {"tools": [TOOL]}, {"system": [{"type": "text", "text": "Be kind."}]}],
)
def test_anthropic_count_equals_the_input_tokens_of_the_message(
    client: TestClient, extra: dict[str, Any]
) -> None:
    body = {
        "model": "tiny:1",
        "messages": [{"role": "user", "content": "What is the weather in Oslo?"}],
        **extra,
    }
    counted = client.post("/v1/messages/count_tokens", json=body)
    assert counted.status_code == 200, counted.text
    sent = client.post("/v1/messages", json={**body, "max_tokens": 4}).json()
    assert (
        counted.json() == {"input_tokens": sent["usage"]["input_tokens"]}
        and sent["usage"]["input_tokens"] > 5
    )


def test_responses_input_tokens_equal_the_usage_with_a_previous_response(client: TestClient) -> None:
    first = client.post("/v1/responses", json={"model": "tiny:1", "input": "My name is Ada."}).json()
    body = {"model": "tiny:1", "input": "What is my name?", "instructions": "Be terse.",
            "previous_response_id": first["id"]}  # fmt: skip
    counted = client.post("/v1/responses/input_tokens", json=body)
    assert counted.status_code == 200, counted.text
    assert counted.json()["object"] == "response.input_tokens"
    sent = client.post("/v1/responses", json=body).json()
    assert counted.json()["input_tokens"] == sent["usage"]["input_tokens"]
    alone = client.post("/v1/responses/input_tokens", json={**body, "previous_response_id": None}).json()
    assert alone["input_tokens"] < counted.json()["input_tokens"]  # the history is counted


def test_counting_refuses_what_generation_refuses(client: TestClient, workers: FakeWorkers) -> None:
    workers.n_ctx = 64  # before the first load
    body = {"model": "tiny:1", "input": "x", "previous_response_id": "resp_nope"}
    unknown = client.post("/v1/responses/input_tokens", json=body)
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "previous_response_not_found"
    missing = client.post("/v1/messages/count_tokens", json={"model": "nope:1", "messages": [
        {"role": "user", "content": "x"}]})  # fmt: skip
    assert missing.status_code == 404
    empty = client.post("/v1/messages/count_tokens", json={"model": "tiny:1", "messages": []})
    assert empty.status_code == 400 and "messages" in empty.text
    long = client.post("/v1/messages/count_tokens", json={"model": "tiny:1", "messages": [
        {"role": "user", "content": "word " * 200}]})  # fmt: skip
    assert long.status_code == 400 and "context" in long.json()["error"]["message"]


def test_images_are_counted_as_generation_counts_them_and_let_go(
    client: TestClient, workers: FakeWorkers, store: ModelStore, tmp_path: Path
) -> None:
    from tests.ggufs import write_tiny_gguf
    from tests.unit.server.test_vision import png

    projector = write_tiny_gguf(tmp_path / "mmproj.gguf", arch="clip", template=None)
    store.import_gguf("vlm:1", write_tiny_gguf(tmp_path / "vlm.gguf"), projector=projector)
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png()}}
    body = {
        "model": "vlm:1",
        "messages": [{"role": "user", "content": [image, {"type": "text", "text": "What?"}]}],
    }
    counted = client.post("/v1/messages/count_tokens", json=body).json()["input_tokens"]
    text_only = {**body, "messages": [{"role": "user", "content": "What?"}]}
    assert (
        counted == client.post("/v1/messages", json={**body, "max_tokens": 2}).json()["usage"]["input_tokens"]
    )
    assert counted > client.post("/v1/messages/count_tokens", json=text_only).json()["input_tokens"]
    (worker,) = [w for w in workers.instances if w.backend.media]
    counting = [rid for rid, _, _ in worker.backend.media if rid.startswith("count-")]
    assert counting and set(counting) <= set(worker.backend.released)  # the image was let go at once
