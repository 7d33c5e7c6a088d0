"""A model whose engine is a remote OpenAI-compatible server (vLLM, llama.cpp's server,
another slmkit): the manager's Worker interface over HTTP, so that slmkit's Ollama and
OpenAI APIs, keys, limits and metrics sit in front of it.

A request becomes ``/chat/completions`` (messages) or ``/completions`` (raw prompt) with
``stream: true`` and usage reporting; the upstream's SSE deltas become TextDelta events and
its usage the final GenerationStats. Only OpenAI's standard sampling fields are sent
(temperature, top_p, max_tokens, stop, seed, presence/frequency penalty); llama.cpp-only
options (top_k, min_p, repeat_penalty) are left to the upstream's defaults. Closing the event
iterator closes the HTTP stream, which cancels the request upstream.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from slmkit.errors import EngineError, InvalidRequest, ModelLoadError, SlmError, WorkerCrashed
from slmkit.pipe import (
    EngineRequest,
    Event,
    Failed,
    Finished,
    GenerationStats,
    ModelInfo,
    SamplingParams,
    TextDelta,
)
from slmkit.security.redact import redact_url

DEFAULTS = SamplingParams()


class UpstreamWorker:
    """Worker (see manager.py) for one upstream model."""

    def __init__(
        self, url: str, model: str, api_key: str = "", transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.shown = redact_url(self.url)  # what messages may say: no credentials, no query
        self.model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(30.0, read=None), transport=transport
        )
        self.info: ModelInfo | None = None
        self.kv_tokens = 0
        self.preemptions = 0
        self._in_flight = 0
        self._closed = False
        self._ending: set[str] = set()  # requests asked to stop early (end)

    @property
    def alive(self) -> bool:
        return not self._closed

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def pid(self) -> int | None:
        return None

    async def start(self, timeout: float) -> ModelInfo:
        """Check that the upstream answers and serves the model."""
        try:
            r = await self._client.get(f"{self.url}/models", timeout=timeout)
        except httpx.HTTPError as exc:
            raise ModelLoadError(
                f"the upstream server at {self.shown} does not answer ({type(exc).__name__})"
            ) from exc
        if r.status_code != 200:
            raise ModelLoadError(f"the upstream server at {self.shown} answered {r.status_code} to /models")
        try:
            names = [m.get("id") for m in r.json().get("data", [])]
        except (ValueError, AttributeError) as exc:
            raise ModelLoadError(f"the upstream server at {self.shown} sent an invalid model list") from exc
        if self.model not in names:
            raise ModelLoadError(
                f"the upstream server does not serve {self.model!r} "
                f"(it has: {', '.join(map(str, names[:5]))})"
            )
        self.info = ModelInfo(n_ctx=0, n_ctx_train=0, n_embd=0, n_vocab=0, n_parallel=1, n_batch=0)
        return self.info

    def _body(self, request: EngineRequest) -> tuple[str, dict[str, Any]]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": s.temperature,
            "top_p": s.top_p,
        }
        if s.max_tokens is not None:
            body["max_tokens"] = s.max_tokens
        if s.stop:
            body["stop"] = list(s.stop)
        if s.seed is not None:
            body["seed"] = s.seed
        if s.presence_penalty:
            body["presence_penalty"] = s.presence_penalty
        if s.frequency_penalty:
            body["frequency_penalty"] = s.frequency_penalty
        if request.messages is not None:
            return "chat/completions", body | {"messages": list(request.messages)}
        return "completions", body | {"prompt": request.prompt or ""}

    async def generate(self, request: EngineRequest) -> AsyncIterator[Event]:
        self._in_flight += 1
        try:
            async for event in self._generate(request):
                yield event
        finally:
            self._in_flight -= 1
            self._ending.discard(request.request_id)

    def end(self, request_id: str) -> None:
        """Stop reading a request's stream (closing it stops the upstream's generation); its
        Finished event follows with what was counted so far."""
        self._ending.add(request_id)

    async def _generate(self, request: EngineRequest) -> AsyncIterator[Event]:
        path, body = self._body(request)
        started = time.perf_counter()
        first: float | None = None
        reason = "stop"
        usage: dict[str, Any] = {}
        pieces = 0
        try:
            async with self._client.stream("POST", f"{self.url}/{path}", json=body) as r:
                if r.status_code != 200:
                    yield Failed(_upstream_error(r.status_code, (await r.aread())[:2000]))
                    return
                async for line in r.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    if request.request_id in self._ending:
                        reason = "cancelled"
                        break
                    chunk = json.loads(data)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        text = (choice.get("delta") or {}).get("content") or choice.get("text") or ""
                        if text:
                            first = first or time.perf_counter()
                            pieces += 1
                            yield TextDelta(text, 1)
                        reason = choice.get("finish_reason") or reason
        except (httpx.HTTPError, ValueError) as exc:
            yield Failed(WorkerCrashed(f"the upstream server failed mid-request ({type(exc).__name__})"))
            return
        done = time.perf_counter()
        stats = GenerationStats(
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", pieces)),
            prompt_eval_seconds=(first or done) - started,
            eval_seconds=done - (first or done),
        )
        yield Finished(
            "length" if reason == "length" else "cancelled" if reason == "cancelled" else "stop", stats
        )

    async def tokenize(self, text: str, add_special: bool) -> list[int]:
        raise InvalidRequest("tokenize: not available for a model served by an upstream server")

    async def detokenize(self, tokens: list[int]) -> str:
        raise InvalidRequest("detokenize: not available for a model served by an upstream server")

    async def render(self, request: EngineRequest) -> list[int]:
        raise InvalidRequest("render: not available for a model served by an upstream server")

    async def embed(self, texts: list[str], priority: int = 0) -> tuple[list[list[float]], int]:
        try:
            r = await self._client.post(f"{self.url}/embeddings", json={"model": self.model, "input": texts})
        except httpx.HTTPError as exc:
            raise WorkerCrashed(f"the upstream server failed ({type(exc).__name__})") from exc
        if r.status_code != 200:
            raise _upstream_error(r.status_code, r.content[:2000])
        data = r.json()
        vectors = [list(map(float, d["embedding"])) for d in sorted(data["data"], key=lambda d: d["index"])]
        return vectors, int((data.get("usage") or {}).get("prompt_tokens", 0))

    async def rank(
        self, pairs: list[tuple[str, str]], priority: int = 0, max_doc_tokens: int = 0
    ) -> tuple[list[float], int]:
        raise InvalidRequest("rerank with a cross-encoder is not forwarded to upstream servers")

    async def stop(self, timeout: float = 5.0, reason: str = "the model was unloaded") -> None:
        self._closed = True
        await self._client.aclose()


def _upstream_error(status: int, body: bytes) -> SlmError:
    """The upstream's refusal as one of ours: its 4xx are the caller's fault (400 here, with
    the upstream's message), anything else is the engine failing (5xx here)."""
    try:
        detail = json.loads(body).get("error")
        message = detail.get("message") if isinstance(detail, dict) else detail
    except (ValueError, AttributeError):
        message = None
    text = str(message or body.decode("utf-8", "replace"))[:300]
    if 400 <= status < 500 and status not in (401, 403, 429):
        return InvalidRequest(f"upstream: {text}")
    return EngineError(f"the upstream server answered {status}: {text}")
