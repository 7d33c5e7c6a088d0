"""Vision end to end with a tiny random SmolVLM (Idefics3) built offline (tests/tiny_models.py),
converted by llama.cpp's converter into a model and a projector, imported as one vision model
and served: through the openai, ollama and anthropic clients and the Responses API; against
llama.cpp's own llama-server for the same request (prompt tokens and greedy tokens); batched
with text streams; with the prefix cache; and against hostile images."""

from __future__ import annotations

import base64
import io
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.integration.conftest import Server, start_server, stop_server
from tests.tiny_models import build, convert

pytest.importorskip("transformers")
pytestmark = pytest.mark.integration

MODEL = "tiny-vlm:1"
QUESTION = "What is in this image?"
LLAMA_SERVER = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slmkit-bench"


def picture(seed: int = 0, size: tuple[int, int] = (96, 64)) -> bytes:
    import numpy as np
    from PIL import Image

    pixels = (np.random.default_rng(seed).random((size[1], size[0], 3)) * 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return buf.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny SmolVLM as llama.cpp's converter writes it: model and projector GGUFs."""
    folder, out = build("smolvlm"), tmp_path_factory.mktemp("vlm")
    return convert(folder, out / "vlm.gguf"), convert(folder, out / "vlm-mmproj.gguf", "--mmproj")


@pytest.fixture(scope="module")
def vlm(files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own (one thread: greedy answers comparable with llama-server's)."""
    models = tmp_path_factory.mktemp("vlm-store")
    s = start_server(models, tmp_path_factory.mktemp("vlm-logs") / "server.log", ready=False,
                     SLM_NUM_THREADS="1", SLM_DEFAULT_MODEL=MODEL)  # fmt: skip
    s.cli("import", MODEL, str(files[0]), "--projector", str(files[1]))
    yield s
    stop_server(s)


def chat(server: str, image: bytes | None, max_tokens: int = 16, **extra: Any) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": QUESTION}]
    if image is not None:
        content.append({"type": "image_url", "image_url": {"url": data_url(image)}})
    body = {
        "model": MODEL,
        "max_tokens": max_tokens,
        "temperature": 0,
        "messages": [{"role": "user", "content": content}],
    }
    r = httpx.post(f"{server}/v1/chat/completions", json=body | extra, timeout=120)
    assert r.status_code == 200, r.text
    return dict(r.json())


def workers(server: Server) -> list[int]:
    children = psutil.Process(server.process.pid).children()
    return sorted(c.pid for c in children if "spawn_main" in " ".join(c.cmdline()))


def test_openai_client_image_request_counts_image_tokens(vlm: Server) -> None:
    from openai import OpenAI

    card = httpx.post(f"{vlm.url}/api/show", json={"model": MODEL}, timeout=30).json()
    assert "vision" in card["capabilities"]
    with OpenAI(base_url=f"{vlm.url}/v1", api_key="unused") as client:
        content: Any = [
            {"type": "text", "text": QUESTION},
            {"type": "image_url", "image_url": {"url": data_url(picture())}},
        ]
        seen = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": content}], max_tokens=8
        )
        text = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": QUESTION}], max_tokens=8
        )
        assert seen.usage is not None and text.usage is not None
        assert seen.usage.prompt_tokens > text.usage.prompt_tokens  # the image's tokens count
        answer = client.responses.create(
            model=MODEL, max_output_tokens=8,
            input=[{"role": "user", "content": [{"type": "input_text", "text": QUESTION},
                                                {"type": "input_image", "image_url": data_url(picture()),
                                                 "detail": "auto"}]}],
        )  # fmt: skip
        assert answer.usage is not None and answer.usage.input_tokens == seen.usage.prompt_tokens


def test_ollama_and_anthropic_clients(vlm: Server) -> None:
    import anthropic
    import ollama

    image = picture()
    client = ollama.Client(host=vlm.url)
    try:
        options = {"num_predict": 8, "temperature": 0}
        with_image = [{"role": "user", "content": QUESTION, "images": [image]}]
        reply = client.chat(model=MODEL, messages=with_image, options=options)
        assert reply.done and reply.prompt_eval_count  # (Ollama counts the tokens not cached)
        generated = client.generate(model=MODEL, prompt="Describe it.", images=[image], options=options)
        assert generated.done and generated.eval_count == 8
    finally:
        client._client.close()
    with anthropic.Anthropic(base_url=vlm.url, api_key="unused") as claude:
        message = claude.messages.create(
            model=MODEL, max_tokens=8,
            messages=[{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                             "data": base64.b64encode(image).decode()}},
                {"type": "text", "text": QUESTION}]}],
        )  # fmt: skip
        assert message.usage.input_tokens > 20


def tokens(answer: dict[str, Any]) -> list[bytes]:
    return [bytes(t["bytes"]) for t in answer["choices"][0]["logprobs"]["content"]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_same_prompt_tokens_and_greedy_tokens_as_llama_server(vlm: Server, files: tuple[Path, Path]) -> None:
    """llama.cpp's own server (built from the same vendored llama.cpp by
    benchmarks/llama_server.py) answers the same OpenAI request with the same prompt token
    count and the same 16 greedy tokens."""
    binary = next(LLAMA_SERVER.glob("llama-server-*/build/bin/llama-server"), None)
    if binary is None:
        pytest.skip("llama-server not built (python benchmarks/llama_server.py builds it, ~15 min)")
    port = free_port()
    process = subprocess.Popen(
        [str(binary), "-m", str(files[0]), "--mmproj", str(files[1]), "--port", str(port), "-t", "1",
         "-c", "2048", "-np", "1", "--no-warmup"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "llama-server exited"
            time.sleep(0.2)
        for image in (picture(0), picture(1, (48, 80)), None):
            ours = chat(vlm.url, image, logprobs=True)
            theirs = chat(f"http://127.0.0.1:{port}", image, logprobs=True)
            assert ours["usage"]["prompt_tokens"] == theirs["usage"]["prompt_tokens"]
            assert ours["usage"]["completion_tokens"] == theirs["usage"]["completion_tokens"] == 16
            # the same 16 tokens: the same bytes (random weights pick partial UTF-8 pieces,
            # which the two servers render and group into text differently)
            assert b"".join(tokens(ours)) == b"".join(tokens(theirs))
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_images_join_a_running_batch_and_a_second_turn_reuses_the_image(vlm: Server) -> None:
    # Long answers (the model's context allows ~980 tokens): each takes hundreds of engine steps,
    # so requests sent together are admitted within a few steps of each other
    long = {"max_tokens": 800, "ignore_eos": True}
    alone = chat(vlm.url, None, **long)["choices"][0]["message"]["content"]
    together = threading.Barrier(4)
    firsts: dict[str, float] = {}
    ends: dict[str, float] = {}
    texts: dict[str, str] = {}

    def stream(name: str, image: bytes | None) -> None:
        content: list[dict[str, Any]] = [{"type": "text", "text": QUESTION}]
        if image is not None:
            content.append({"type": "image_url", "image_url": {"url": data_url(image)}})
        body = {
            "model": MODEL,
            "temperature": 0,
            "stream": True,
            "messages": [{"role": "user", "content": content}],
        }
        parts = []
        together.wait(timeout=60)
        with httpx.stream("POST", f"{vlm.url}/v1/chat/completions", json=body | long, timeout=120) as r:
            for line in r.iter_lines():
                if line.startswith("data: {") and '"content"' in line:
                    firsts.setdefault(name, time.monotonic())
                    import json

                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    parts.append(delta.get("content") or "")
        ends[name] = time.monotonic()
        texts[name] = "".join(parts)

    runs = (("victim", None), ("text", None), ("image-a", picture(2)), ("image-b", picture(3)))
    threads = [threading.Thread(target=stream, args=run) for run in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert set(ends) == {"victim", "text", "image-a", "image-b"}
    assert max(firsts.values()) < min(ends.values())  # all four were running together
    assert texts["victim"] == alone  # its greedy answer, untouched by the images joining
    # the same image and question again: its prompt (image included) comes from the cache
    first = chat(vlm.url, picture(4))
    again = chat(vlm.url, picture(4))
    cached = again["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert cached >= first["usage"]["prompt_tokens"] - 1 and again["choices"] == first["choices"]


def png_declaring(width: int, height: int, body: bytes = b"") -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_hostile_images_are_refused_and_the_worker_lives(vlm: Server) -> None:
    import zlib

    chat(vlm.url, picture())  # the worker is up
    before = workers(vlm)
    big = picture(5, (300, 300))
    cases: list[tuple[str, list[bytes]]] = [
        ("truncated", [big[: len(big) // 2]]),
        ("100k x 100k", [png_declaring(100_000, 100_000)]),
        ("zip bomb", [png_declaring(20_000, 20_000, zlib.compress(b"\0" * 2_000_000))]),
        ("not an image", [b"#!/bin/sh\necho this is not a picture\n"]),
        ("100 images", [picture()] * 100),
    ]
    for name, images in cases:
        content: list[dict[str, Any]] = [{"type": "text", "text": QUESTION}]
        content += [{"type": "image_url", "image_url": {"url": data_url(i)}} for i in images]
        body = {"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": content}]}
        r = httpx.post(f"{vlm.url}/v1/chat/completions", timeout=120, json=body)
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text[:300])
        assert "image" in r.json()["error"]["message"], name
    assert workers(vlm) == before  # never restarted
    assert chat(vlm.url, picture())["usage"]["completion_tokens"] == 16


def test_the_chat_page_attaches_an_image(vlm: Server, browser: Any, tmp_path: Path) -> None:
    """In headless Chromium: a vision model takes an image from the file picker, it goes with the
    message (shown as a thumbnail) and the answer comes."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    image = tmp_path / "cat.png"
    image.write_bytes(picture())
    wait = WebDriverWait(browser, 60)
    browser.get(f"{vlm.url}/ui/")
    wait.until(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"))
    wait.until(lambda d: MODEL in [o.text for o in Select(d.find_element(By.ID, "model")).options])
    Select(browser.find_element(By.ID, "model")).select_by_visible_text(MODEL)
    browser.find_element(By.ID, "files").send_keys(str(image))  # a vision model: images are taken
    wait.until(lambda d: "cat.png" in d.find_element(By.ID, "attachments").text)
    browser.find_element(By.CSS_SELECTOR, "#settings summary").click()
    browser.find_element(By.ID, "max_tokens").send_keys("8")
    browser.find_element(By.ID, "prompt").send_keys(QUESTION)
    browser.find_element(By.ID, "send").click()
    meta = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#log li.assistant .meta")))
    assert "tokens" in meta.text
    assert (
        browser.find_element(By.CSS_SELECTOR, "#log li.user img.thumb")
        .get_attribute("src")
        .startswith("data:image/png")
    )
    assert "Error" not in browser.find_element(By.CSS_SELECTOR, "#log li.assistant .text").text
