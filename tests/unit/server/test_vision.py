"""Images on every dialect, with fake workers: each dialect's image reaches the worker decoded,
in prompt order, placed by one marker where the dialect put it; a text-only model answers 400;
limits answer 400 naming them. (The real model: tests/integration/test_vision.py.)"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from slmkit.pipe import MEDIA_MARKER
from slmkit.store import ModelStore
from tests.ggufs import write_tiny_gguf
from tests.unit.server.fakes import FakeWorkers


def png(color: tuple[int, int, int] = (10, 20, 30), size: tuple[int, int] = (6, 4)) -> str:
    from PIL import Image as Pillow

    buf = io.BytesIO()
    Pillow.new("RGB", size, color).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture
def vision(store: ModelStore, tmp_path: Path) -> str:
    projector = write_tiny_gguf(tmp_path / "mmproj.gguf", arch="clip", template=None)
    store.import_gguf("vlm:1", write_tiny_gguf(tmp_path / "vlm.gguf"), projector=projector)
    return "vlm:1"


def seen(workers: FakeWorkers) -> list[tuple[str, str, tuple]]:  # type: ignore[type-arg]
    return [m for w in workers.instances for m in w.backend.media]


def test_a_vision_model_says_so(client: TestClient, vision: str) -> None:
    assert "vision" in client.post("/api/show", json={"model": vision}).json()["capabilities"]
    assert "vision" not in client.post("/api/show", json={"model": "tiny:1"}).json()["capabilities"]
    cards = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert "vision" in cards[vision]["capabilities"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", lambda m, a, b: {"model": m, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "compare"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{a}"}},
            {"type": "text", "text": "and"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b}"}}]}]}),
        ("/api/chat", lambda m, a, b: {"model": m, "stream": False, "messages": [
            {"role": "user", "content": "compare", "images": [a, b]}]}),
        ("/api/generate", lambda m, a, b: {"model": m, "stream": False, "prompt": "compare",
                                           "images": [a, b]}),
        ("/v1/messages", lambda m, a, b: {"model": m, "max_tokens": 8, "messages": [{"role": "user",
                                                                                     "content": [
            {"type": "text", "text": "compare"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": a}},
            {"type": "text", "text": "and"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": b}}]}]}),
        ("/v1/responses", lambda m, a, b: {"model": m, "input": [{"role": "user", "content": [
            {"type": "input_text", "text": "compare"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{a}"},
            {"type": "input_text", "text": "and"},
            {"type": "input_image", "image_url": f"data:image/png;base64,{b}"}]}]}),
    ],
)  # fmt: skip
def test_every_dialect_sends_its_images_decoded_and_placed(
    client: TestClient, workers: FakeWorkers, vision: str, path: str, body: object
) -> None:
    first, second = png((255, 0, 0)), png((0, 0, 255), (3, 5))
    r = client.post(path, json=body(vision, first, second))  # type: ignore[operator]
    assert r.status_code == 200, r.text
    ((_, text, images),) = seen(workers)
    assert text.count(MEDIA_MARKER) == 2 and "compare" in text
    assert [(i.width, i.height) for i in images] == [(6, 4), (3, 5)]  # in prompt order, decoded
    assert images[0].rgb[:3] == bytes((255, 0, 0)) and images[1].rgb[:3] == bytes((0, 0, 255))
    if path in ("/v1/chat/completions", "/v1/messages", "/v1/responses"):
        assert (
            f"compare{MEDIA_MARKER}\nand{MEDIA_MARKER}" in text
            or f"compare{MEDIA_MARKER}and{MEDIA_MARKER}" in text
        )
    else:  # Ollama: a message's images come before its text
        assert f"{MEDIA_MARKER}{MEDIA_MARKER}compare" in text


def test_a_text_model_sent_an_image_answers_400(client: TestClient) -> None:
    r = client.post("/api/chat", json={"model": "tiny:1", "stream": False, "messages": [
        {"role": "user", "content": "what is this", "images": [png()]}]})  # fmt: skip
    assert r.status_code == 400 and "does not take images" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"images": ["aGVsbG8="]}, 400, "images.0: not an image"),  # base64 of "hello": not an image
        ({"images": ["!!!"]}, 400, "images.0: not base64"),
        ({"images": [png()] * 9}, 400, "SLM_MAX_IMAGES"),
        ({"prompt": f"a {MEDIA_MARKER} b", "images": [png()]}, 400, "reserved"),
        ({"raw": True, "images": [png()]}, 400, "raw"),
    ],
)
def test_bad_images_answer_400_naming_the_field_or_limit(
    client: TestClient, vision: str, body: dict[str, object], status: int, message: str
) -> None:
    r = client.post("/api/generate", json={"model": vision, "stream": False, "prompt": "x"} | body)
    assert r.status_code == status and message in r.json()["error"], r.text


def test_remote_image_urls_are_not_fetched(client: TestClient, vision: str) -> None:
    content = [{"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data"}}]
    r = client.post(
        "/v1/chat/completions", json={"model": vision, "messages": [{"role": "user", "content": content}]}
    )
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "messages.0.content.0.image_url" in message and "does not fetch" in message


def test_a_model_made_from_a_vision_model_keeps_its_projector(client: TestClient, vision: str) -> None:
    r = client.post(
        "/api/create", json={"model": "vlm-terse:1", "from": vision, "system": "Be terse.", "stream": False}
    )
    assert r.status_code == 200, r.text
    assert "vision" in client.post("/api/show", json={"model": "vlm-terse:1"}).json()["capabilities"]
