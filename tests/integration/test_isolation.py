"""Attacks while a victim's stream is in flight on the same model (real model, real server):
each attack gets its refusal, the victim's greedy answer completes unchanged, the worker does
not restart, and the next request is served. Browser-shaped attacks are made as a browser
makes them: an Origin header and a text/plain body that needs no CORS preflight."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.integration.conftest import MODEL, Server, wait_until

pytestmark = pytest.mark.integration
VICTIM = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
BROWSER = {"Origin": "https://evil.example", "Content-Type": "text/plain", "Sec-Fetch-Mode": "no-cors"}


def victim_answer(server: Server, streaming: threading.Event | None = None) -> str:
    """The victim's greedy streamed answer; ``streaming`` is set at its first text."""
    with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
        parts = []
        for chunk in client.chat.completions.create(
            model=MODEL,
            messages=VICTIM,
            temperature=0,
            max_tokens=96,
            stream=True,  # type: ignore[arg-type]
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
                if streaming is not None:
                    streaming.set()
    return "".join(parts)


def metric(server: Server, name: str) -> float:
    """The smollm2 sample of metric ``name`` (0 when it has none yet)."""
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    found = re.findall(rf'^{name}\{{model="smollm2:135m"\}} (\S+)$', text, re.MULTILINE)
    return float(found[0]) if found else 0.0


def restarts(server: Server) -> float:
    return metric(server, "slm_worker_restarts_total")


def running(server: Server) -> float:
    return metric(server, "slm_requests_running")


def during_victim(server: Server, attack: Callable[[], None]) -> str:
    """Run ``attack`` while the victim streams; the victim's answer."""
    out: dict[str, str] = {}
    streaming = threading.Event()
    thread = threading.Thread(target=lambda: out.setdefault("text", victim_answer(server, streaming)))
    thread.start()
    try:
        assert streaming.wait(timeout=300), "the victim never started streaming"
        attack()
    finally:
        thread.join(timeout=300)
    return out["text"]


def test_attacks_leave_a_victim_stream_unchanged(server: Server) -> None:
    alone = victim_answer(server)
    before = restarts(server)
    seen: list[int] = []

    def cross_site() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as c:
            for path, body in [
                ("/api/create", '{"model": "planted:1", "from": "smollm2:135m", "system": "obey"}'),
                ("/api/copy", '{"source": "smollm2:135m", "destination": "planted:2"}'),
                ("/api/pull", '{"model": "127.0.0.1:1/x/y:z", "insecure": true}'),
                ("/api/generate", '{"model": "smollm2:135m", "prompt": "hi"}'),
                ("/api/generate", '{"model": "smollm2:135m", "keep_alive": 0}'),
            ]:
                seen.append(c.post(path, content=body, headers=BROWSER).status_code)
            seen.append(
                c.request(
                    "DELETE", "/api/delete", content='{"model": "smollm2:135m"}', headers=BROWSER
                ).status_code
            )

    assert during_victim(server, cross_site) == alone
    assert seen == [403] * 6
    names = [m["name"] for m in httpx.get(f"{server.url}/api/tags", timeout=30).json()["models"]]
    assert not any(n.startswith("planted") for n in names) and MODEL in names

    def unload_from_another_client() -> None:  # the victim is streaming (during_victim)
        r = httpx.post(f"{server.url}/api/generate", json={"model": MODEL, "keep_alive": 0}, timeout=60)
        seen.append(r.status_code)

    assert during_victim(server, unload_from_another_client) == alone  # not cut off
    assert seen[-1] == 200
    assert restarts(server) == before
    r = httpx.post(
        f"{server.url}/api/generate",
        json={"model": MODEL, "prompt": "Hi", "stream": False, "options": {"num_predict": 4}},
        timeout=120,
    )
    assert r.status_code == 200 and r.json()["eval_count"] == 4  # the next request is served


def test_the_largest_values_of_the_new_fields_leave_a_victim_unchanged(server: Server) -> None:
    """The extremes of the fields this change added or bounded, sent while a victim streams:
    each is refused with a 400 naming its limit, or finishes within its budget."""
    alone = victim_answer(server)
    before = restarts(server)
    got: dict[str, httpx.Response] = {}
    # 16 stop strings of 1000 characters that the text keeps almost matching: linear matching
    adversarial = ["e" * 999 + chr(0x4E00 + i) for i in range(16)]
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "Say e many times."}], "stream": False}

    def extremes() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            got["stops"] = c.post(
                "/api/chat", json=chat | {"options": {"stop": adversarial, "num_predict": 16}}
            )
            got["too many stops"] = c.post("/api/chat", json=chat | {"options": {"stop": ["x"] * 17}})
            got["long stop"] = c.post("/api/chat", json=chat | {"options": {"stop": ["x" * 1001]}})
            got["num_predict"] = c.post("/api/chat", json=chat | {"options": {"num_predict": 10**9}})
            got["embed inputs"] = c.post("/api/embed", json={"model": MODEL, "input": ["a"] * 257})
            got["think"] = c.post("/api/chat", json=chat | {"think": "high"})  # SmolLM2 cannot think
            got["anthropic thinking"] = c.post(
                "/v1/messages",
                json={
                    "model": MODEL,
                    "max_tokens": 8,
                    "messages": chat["messages"],
                    "thinking": {"type": "x"},
                },
            )
            got["reasoning"] = c.post(
                "/v1/responses", json={"model": MODEL, "input": "hi", "reasoning": {"effort": "max"}}
            )
            got["schema bound"] = c.post(  # built as a grammar, this crashed llama.cpp's parser
                "/api/chat", json=chat | {"format": {"type": "string", "maxLength": 100_000}}
            )
            got["schema budget"] = c.post(
                "/v1/chat/completions",
                json={
                    "model": MODEL,
                    "messages": chat["messages"],
                    "max_tokens": 64,
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "x", "schema": {"type": "array", "minItems": 65}},
                    },
                },
            )
            got["schema pattern"] = c.post(
                "/api/chat", json=chat | {"format": {"type": "string", "pattern": "^(a{1,9000}){1,9000}$"}}
            )
            got["big body"] = c.post("/api/chat", content=b"x" * (9 * 1024 * 1024))
            got["deep body"] = c.post("/api/chat", content=b"[" * 100_000 + b"]" * 100_000)
            got["pull loopback"] = c.post(
                "/api/pull", json={"model": "127.0.0.1:9/x/y:z", "insecure": True, "stream": False}
            )
            got["num_ctx huge"] = c.post(  # capped by the model's window: no reload under the victim
                "/api/chat", json=chat | {"options": {"num_ctx": 1 << 20, "num_predict": 4}}
            )
            got["num_ctx tiny"] = c.post("/api/chat", json=chat | {"options": {"num_ctx": 16}})
            got["context ids"] = c.post(
                "/api/generate", json={"model": MODEL, "prompt": "hi", "context": [2**30], "stream": False}
            )
            tool = {"type": "function", "name": "f", "parameters": {"type": "object", "properties": {}}}
            responses = {"model": MODEL, "input": "Call f."}
            got["responses 65 tools"] = c.post(
                "/v1/responses", json=responses | {"tools": [tool | {"name": f"f{i}"} for i in range(65)]}
            )
            got["responses server tool"] = c.post(
                "/v1/responses", json=responses | {"tools": [{"type": "web_search"}]}
            )
            deep_call = {"type": "function_call", "call_id": "c", "name": "f", "arguments": "[" * 100_000}
            got["responses deep arguments"] = c.post(  # inside a string: the body's depth scan cannot see it
                "/v1/responses", json=responses | {"input": [deep_call]}
            )
            got["responses forced call cut"] = (
                c.post(  # a required call in 3 tokens: incomplete, no half call
                    "/v1/responses",
                    json=responses | {"tools": [tool], "tool_choice": "required", "max_output_tokens": 3},
                )
            )

    assert during_victim(server, extremes) == alone
    assert got["stops"].status_code == 200 and got["stops"].json()["eval_count"] <= 16
    assert got["num_ctx huge"].status_code == 200 and got["num_ctx huge"].json()["eval_count"] == 4
    cut = got["responses forced call cut"]
    assert cut.status_code == 200 and cut.json()["status"] == "incomplete", cut.text
    (message,) = cut.json()["output"]  # a message without the half-written call, no function_call
    assert message["type"] == "message" and message["content"][0]["text"] == "", cut.text
    ok = ("stops", "num_ctx huge", "responses forced call cut")
    refused = {name: r for name, r in got.items() if name not in ok}
    expected = dict.fromkeys(refused, 400) | {"big body": 413, "pull loopback": 502}
    assert {name: r.status_code for name, r in refused.items()} == expected, {
        name: r.text for name, r in refused.items()
    }
    assert "SLM_PULL_PRIVATE" in got["pull loopback"].text and "SLM_MAX_JSON_DEPTH" in got["deep body"].text
    assert "SLM_MAX_STOP" in got["too many stops"].text and "SLM_MAX_TOKENS" in got["num_predict"].text
    assert "SLM_MAX_EMBED_INPUTS" in got["embed inputs"].text and "vocabulary" in got["context ids"].text
    assert "maxLength: 100000" in got["schema bound"].text and "max_tokens 64" in got["schema budget"].text
    assert (
        "at most 64 tools" in got["responses 65 tools"].text
        and "tools.0" in got["responses server tool"].text
    )
    assert "input.0.arguments" in got["responses deep arguments"].text
    assert restarts(server) == before


def test_a_long_embedding_job_does_not_hold_up_a_stream(server: Server) -> None:
    """A job of 48 inputs (10 chunks) is sent first; a stream sent after it finishes before it,
    with its greedy answer unchanged: the worker interleaves embedding chunks with
    generation steps instead of running the whole job first (ordering, not speed)."""
    short = [{"role": "user", "content": "Name three colors."}]

    def stream() -> str:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as client:
            out = client.chat.completions.create(model=MODEL, messages=short, temperature=0, max_tokens=24)  # type: ignore[arg-type]
        return out.choices[0].message.content or ""

    alone = stream()
    before = restarts(server)
    order: list[str] = []
    texts = [f"{i} " + "the quick brown fox jumps over the lazy dog " * 4 for i in range(48)]

    def embed() -> None:
        r = httpx.post(f"{server.url}/api/embed", json={"model": MODEL, "input": texts}, timeout=600)
        order.append(f"embed {r.status_code} {len(r.json().get('embeddings', []))}")

    job = threading.Thread(target=embed)
    job.start()
    wait_until(lambda: running(server) >= 1, 120, "the embedding job never reached the worker")
    text = stream()
    order.append("stream")
    job.join(timeout=600)
    assert text == alone
    assert order == ["stream", "embed 200 48"]
    assert restarts(server) == before


def test_batch_rerank_and_tokenizer_extremes_leave_a_victim_unchanged(server: Server) -> None:
    """The newest inputs at their limits while a victim streams: a batch job of 2000 bad
    lines and one of real requests, rerank over the input limit and at it, 65 prompts, a
    1 MiB + 1 /tokenize text (and chat), 131073 /detokenize ids, a render over the context
    window with max_tokens 10^9, 65 prompts to render. Refusals name their limit, the
    accepted work completes, the victim's greedy answer is unchanged, no worker restarts."""
    import json
    import time

    alone = victim_answer(server)
    before = restarts(server)
    got: dict[str, httpx.Response] = {}
    garbage = b"".join(
        b'{"custom_id": "g%d", "url": "/v1/nope", "body": ' % i + b"[" * 40 + b"\n" for i in range(2000)
    )
    real = "".join(
        json.dumps({"custom_id": f"r{i}", "url": "/v1/completions",
                    "body": {"model": MODEL, "prompt": f"{i}+{i}=", "max_tokens": 4}}) + "\n"
        for i in range(16)
    )  # fmt: skip
    jobs: list[str] = []

    def extremes() -> None:
        with httpx.Client(base_url=server.url, timeout=300) as c:
            for name, data in (("garbage", garbage), ("real", real.encode())):
                f = c.post(
                    "/v1/files", data={"purpose": "batch"}, files={"file": (f"{name}.jsonl", data)}
                ).json()
                job = c.post("/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/completions"})
                jobs.append(job.json()["id"])
            docs = ["word " * 20] * 255
            got["rerank 256 inputs"] = c.post(
                "/v1/rerank", json={"model": MODEL, "query": "q", "documents": [*docs, "x"]}
            )
            got["rerank 255 documents"] = c.post(
                "/v1/rerank", json={"model": MODEL, "query": "q", "documents": docs}
            )
            got["65 prompts"] = c.post(
                "/v1/completions", json={"model": MODEL, "prompt": ["a"] * 65, "max_tokens": 1}
            )
            got["tokenize 1 MiB"] = c.post(
                "/tokenize", json={"model": MODEL, "prompt": "a" * ((1 << 20) + 1)}
            )
            got["detokenize"] = c.post("/detokenize", json={"model": MODEL, "tokens": [1] * ((1 << 17) + 1)})
            big = [{"role": "user", "content": "a" * ((1 << 20) + 1)}]
            got["tokenize chat 1 MiB"] = c.post("/tokenize", json={"model": MODEL, "messages": big})
            long = [{"role": "user", "content": "word " * 6000}]  # over the 4096-token window
            got["render over context"] = c.post(
                "/v1/chat/completions/render", json={"model": MODEL, "messages": long}
            )
            got["render max_tokens"] = c.post(
                "/v1/chat/completions/render", json={"model": MODEL, "messages": long, "max_tokens": 10**9}
            )
            got["render 65 prompts"] = c.post(
                "/v1/completions/render", json={"model": MODEL, "prompt": ["a"] * 65}
            )

    assert during_victim(server, extremes) == alone
    assert (
        got["rerank 255 documents"].status_code == 200
        and len(got["rerank 255 documents"].json()["results"]) == 255
    )
    refused = {name: r.status_code for name, r in got.items() if name != "rerank 255 documents"}
    assert refused == dict.fromkeys(refused, 400), {name: r.text for name, r in got.items()}
    assert "SLM_MAX_EMBED_INPUTS" in got["rerank 256 inputs"].text
    assert "messages: 1048" in got["tokenize chat 1 MiB"].text
    assert "more than the context window" in got["render over context"].text
    assert "SLM_MAX_TOKENS" in got["render max_tokens"].text  # as the chat endpoint refuses it
    with httpx.Client(base_url=server.url, timeout=30) as c:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            states = [c.get(f"/v1/batches/{j}").json() for j in jobs]
            if all(s["status"] == "completed" for s in states):
                break
            time.sleep(0.5)
    assert [s["request_counts"] for s in states] == [
        {"total": 2000, "completed": 0, "failed": 2000},
        {"total": 16, "completed": 16, "failed": 0},
    ]
    assert restarts(server) == before


SURROGATE = "a\ud800b"  # valid JSON; before the text check, it killed the worker


def test_a_lone_surrogate_in_any_field_is_refused_and_the_victim_is_unchanged(server: Server) -> None:
    """The surrogate in every text field that reached the worker (prompt, message, embedding
    input, rerank document, Responses input and instructions, Anthropic message, Ollama prompt
    and system, /tokenize text, a schema pattern), and a batch of such lines, while a victim
    streams: each is a 400 naming its field, the victim's greedy text is unchanged, and no
    worker restarts."""
    import json

    alone = victim_answer(server)
    before = restarts(server)
    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": SURROGATE}}}
    attacks = {
        "/v1/completions prompt": ("/v1/completions", {"model": MODEL, "prompt": SURROGATE}),
        "/v1/chat/completions messages.0.content": (
            "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": SURROGATE}]}),
        "/v1/chat/completions response_format": ("/v1/chat/completions", {
            "model": MODEL, "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}),
        "/v1/embeddings input.0": ("/v1/embeddings", {"model": MODEL, "input": [SURROGATE]}),
        "/v1/rerank documents.0": ("/v1/rerank", {"model": MODEL, "query": "q", "documents": [SURROGATE]}),
        "/v1/responses input": ("/v1/responses", {"model": MODEL, "input": SURROGATE}),
        "/v1/responses instructions": (
            "/v1/responses", {"model": MODEL, "input": "x", "instructions": SURROGATE}),
        "/v1/messages messages.0.content": ("/v1/messages", {
            "model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": SURROGATE}]}),
        "/api/generate prompt": ("/api/generate", {"model": MODEL, "prompt": SURROGATE}),
        "/api/generate system": ("/api/generate", {"model": MODEL, "prompt": "x", "system": SURROGATE}),
        "/api/embed input": ("/api/embed", {"model": MODEL, "input": SURROGATE}),
        "/tokenize prompt": ("/tokenize", {"model": MODEL, "prompt": SURROGATE}),
        "/tokenize messages.0.content": (
            "/tokenize", {"model": MODEL, "messages": [{"role": "user", "content": SURROGATE}]}),
        "/v1/chat/completions/render messages.0.content": ("/v1/chat/completions/render",
            {"model": MODEL, "messages": [{"role": "user", "content": SURROGATE}]}),
        "/v1/completions/render prompt": ("/v1/completions/render", {"model": MODEL, "prompt": SURROGATE}),
    }  # fmt: skip
    got: dict[str, httpx.Response] = {}
    line = {
        "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": SURROGATE}]},
    }
    poison = "".join(json.dumps({"custom_id": f"p{i}", **line}) + "\n" for i in range(20)).encode()
    jobs: list[str] = []

    def attack() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as c:
            for name, (route, body) in attacks.items():
                got[name] = c.post(
                    route, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
                )
            strange = {
                "model": MODEL,
                "prompt": "a\x00b\x1b[31m\u202e\U0010ffff",
                "stream": False,
                "options": {"num_predict": 4},
            }  # valid text: served
            got["strange but valid"] = c.post("/api/generate", json=strange)
            f = c.post("/v1/files", data={"purpose": "batch"}, files={"file": ("p.jsonl", poison)}).json()
            made = c.post("/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/chat/completions"})
            jobs.append(made.json()["id"])

    assert during_victim(server, attack) == alone
    served = got.pop("strange but valid")
    assert served.status_code == 200 and served.json()["eval_count"] > 0, served.text
    for name, r in got.items():
        assert r.status_code == 400 and "not valid Unicode" in r.text, (name, r.text)
    assert "messages.0.content" in got["/v1/messages messages.0.content"].text
    assert "pattern" in got["/v1/chat/completions response_format"].text

    def finished() -> Any:
        state = httpx.get(f"{server.url}/v1/batches/{jobs[0]}", timeout=30).json()
        return state if state["status"] in ("completed", "failed") else None

    state = wait_until(finished, 300, "the poison batch never finished")
    assert state["request_counts"] == {"total": 20, "completed": 0, "failed": 20}
    assert restarts(server) == before
