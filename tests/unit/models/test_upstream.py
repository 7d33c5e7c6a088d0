"""UpstreamWorker against an in-process fake OpenAI server (httpx MockTransport)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from slmkit.config import Config, parse_upstreams
from slmkit.errors import EngineError, InvalidRequest, ModelLoadError, WorkerCrashed
from slmkit.models.upstream import UpstreamWorker
from slmkit.pipe import EngineRequest, Failed, Finished, SamplingParams, TextDelta
from slmkit.store import ModelStore


def sse(*chunks: dict[str, object]) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


class FakeOpenAI:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, object]] = []
        self.headers: list[httpx.Headers] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "remote-m"}]})
        body = json.loads(request.content)
        self.bodies.append(body)
        if self.status != 200:
            return httpx.Response(self.status, json={"error": {"message": "max_tokens is too large"}})
        if request.url.path == "/v1/embeddings":
            data = [{"index": 1, "embedding": [0, 1]}, {"index": 0, "embedding": [1, 0]}]
            return httpx.Response(200, json={"data": data, "usage": {"prompt_tokens": 3}})
        field = "delta" if request.url.path.endswith("chat/completions") else None

        def piece(t: str) -> dict[str, object]:
            return {field: {"content": t}} if field else {"text": t}

        pieces = [{"choices": [{"index": 0, **piece(t), "finish_reason": None}]} for t in ("Hel", "lo")]
        end = {
            "choices": [{"index": 0, **({field: {}} if field else {"text": ""}), "finish_reason": "length"}]
        }
        usage = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}
        return httpx.Response(
            200, content=sse(*pieces, end, usage), headers={"content-type": "text/event-stream"}
        )


def worker(fake: FakeOpenAI, model: str = "remote-m") -> UpstreamWorker:
    return UpstreamWorker("http://up:8000/v1", model, "k-123", transport=httpx.MockTransport(fake))


async def collect(w: UpstreamWorker, request: EngineRequest) -> list[object]:
    return [event async for event in w.generate(request)]


def test_chat_streams_deltas_and_usage_and_sends_openai_fields() -> None:
    fake = FakeOpenAI()
    w = worker(fake)

    async def run() -> list[object]:
        await w.start(5)
        request = EngineRequest(
            "r",
            SamplingParams(temperature=0.2, max_tokens=5, stop=("x",), seed=3),
            messages=({"role": "user", "content": "hi"},),
        )
        events = await collect(w, request)
        await w.stop()
        return events

    events = asyncio.run(run())
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo"]
    done = events[-1]
    assert isinstance(done, Finished) and done.reason == "length"
    assert done.stats.prompt_tokens == 7 and done.stats.completion_tokens == 2
    body = fake.bodies[0]
    assert body["model"] == "remote-m" and body["stream"] is True and body["max_tokens"] == 5
    assert body["stop"] == ["x"] and body["seed"] == 3 and "top_k" not in body
    assert fake.headers[-1]["authorization"] == "Bearer k-123"
    assert not w.alive


def test_raw_prompts_use_completions() -> None:
    fake = FakeOpenAI()
    events = asyncio.run(collect(worker(fake), EngineRequest("r", SamplingParams(), prompt="Once")))
    assert fake.bodies[0]["prompt"] == "Once"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Hello"


@pytest.mark.parametrize(("status", "kind"), [(400, InvalidRequest), (500, EngineError), (401, EngineError)])
def test_upstream_refusals_become_our_errors(status: int, kind: type[Exception]) -> None:
    events = asyncio.run(
        collect(worker(FakeOpenAI(status)), EngineRequest("r", SamplingParams(), prompt="x"))
    )
    assert len(events) == 1 and isinstance(events[0], Failed) and type(events[0].error) is kind
    assert "max_tokens is too large" in str(events[0].error)


def test_unreachable_or_wrong_model_fails_the_load_and_dead_streams_fail_requests() -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    dead = UpstreamWorker("http://up:8000/v1", "m", transport=httpx.MockTransport(down))
    with pytest.raises(ModelLoadError, match="does not answer"):
        asyncio.run(dead.start(1))
    events = asyncio.run(collect(dead, EngineRequest("r", SamplingParams(), prompt="x")))
    assert isinstance(events[0], Failed) and isinstance(events[0].error, WorkerCrashed)
    with pytest.raises(ModelLoadError, match="does not serve 'other'"):
        asyncio.run(worker(FakeOpenAI(), "other").start(1))


def test_embeddings_in_input_order() -> None:
    vectors, tokens = asyncio.run(worker(FakeOpenAI()).embed(["a", "b"]))
    assert vectors == [[1.0, 0.0], [0.0, 1.0]] and tokens == 3


def test_upstream_settings_and_store_records(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("s3cret\n")
    config = Config.from_env(
        {
            "SLM_UPSTREAMS": "phi=http://vllm:8000/v1#microsoft/Phi-4-mini-instruct",
            "SLM_UPSTREAM_API_KEY_FILE": str(tmp_path / "key"),
        }
    )
    assert config.upstream_api_key == "s3cret"
    (up,) = config.upstreams
    assert (up.name, up.url, up.model) == (
        "phi:latest",
        "http://vllm:8000/v1",
        "microsoft/Phi-4-mini-instruct",
    )
    assert parse_upstreams("m=https://h/v1")[0].model == "m"
    for bad in ("m", "m=ftp://h", "m=http://"):
        with pytest.raises(InvalidRequest, match="SLM_UPSTREAMS"):
            parse_upstreams(bad)
    with pytest.raises(InvalidRequest, match="HF_TOKEN_FILE"):
        Config.from_env({"HF_TOKEN_FILE": str(tmp_path / "missing")})
    store = ModelStore(tmp_path / "models")
    first = store.register_upstream("phi:latest", up.url, up.model)
    assert first.upstream == {"url": up.url, "model": up.model} and first.config.model_family == "upstream"
    assert store.register_upstream("phi:latest", up.url, up.model).digest == first.digest  # unchanged
    assert store.register_upstream("phi:latest", "http://other/v1", up.model).upstream == {
        "url": "http://other/v1",
        "model": up.model,
    }


def test_an_ended_request_stops_reading_and_still_finishes() -> None:
    w = worker(FakeOpenAI())

    async def run() -> list[object]:
        await w.start(5)
        request = EngineRequest("r", SamplingParams(), messages=({"role": "user", "content": "hi"},))
        events = []
        async for event in w.generate(request):
            events.append(event)
            if isinstance(event, TextDelta):
                w.end("r")
        await w.stop()
        return events

    events = asyncio.run(run())
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel"]  # nothing read after end
    done = events[-1]
    assert isinstance(done, Finished) and done.reason == "cancelled" and done.stats.completion_tokens == 1
    assert not w._ending
