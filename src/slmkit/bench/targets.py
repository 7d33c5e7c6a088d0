"""What a benchmark can talk to: an OpenAI-style server, an Ollama-style server, or the engine
itself (``slm://MODEL``: slmkit's model manager and worker in this process, no HTTP)."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Protocol

import httpx

from slmkit.bench.stats import RequestResult
from slmkit.errors import InvalidRequest


class Target(Protocol):
    label: str

    async def request(self, prompt: str, max_tokens: int) -> RequestResult: ...

    async def close(self) -> None: ...


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, httpx.HTTPStatusError):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.TransportError):
        return "connection"
    return type(exc).__name__


class _HTTPTarget:
    def __init__(self, base_url: str, model: str, api_key: str | None, label: str | None) -> None:
        self.base = base_url.rstrip("/")
        self.model = model
        self.label = label or f"{self.base} ({model})"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(timeout=600, headers=headers)

    async def close(self) -> None:
        await self.http.aclose()

    async def _lines(self, path: str, body: dict[str, object]) -> AsyncIterator[str]:
        async with self.http.stream("POST", f"{self.base}{path}", json=body) as response:
            if response.status_code >= 400:
                await response.aread()
                response.raise_for_status()
            async for line in response.aiter_lines():
                if line.strip():
                    yield line


class OpenAITarget(_HTTPTarget):
    """``/v1/completions`` streamed, raw prompts (no chat template differences between runtimes)."""

    async def request(self, prompt: str, max_tokens: int) -> RequestResult:
        result = RequestResult(sent=time.perf_counter())
        body = {
            "model": self.model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        chunks = 0
        last = result.sent
        try:
            async for line in self._lines("/v1/completions", body):
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                now = time.perf_counter()
                if data.get("usage"):
                    result.output_tokens = int(data["usage"].get("completion_tokens", chunks))
                    result.prompt_tokens = int(data["usage"].get("prompt_tokens", 0))
                elif data.get("choices") and data["choices"][0].get("text"):
                    chunks += 1
                    if result.first_token is None:
                        result.first_token = now
                    else:
                        result.gaps.append(now - last)
                    last = now
            result.finished = time.perf_counter()
            result.output_tokens = result.output_tokens or chunks
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            result.error = _error_kind(exc)
        return result


class OllamaTarget(_HTTPTarget):
    """``/api/generate`` streamed with ``raw`` prompts and ``num_predict``."""

    async def request(self, prompt: str, max_tokens: int) -> RequestResult:
        result = RequestResult(sent=time.perf_counter())
        body = {
            "model": self.model,
            "prompt": prompt,
            "raw": True,
            "stream": True,
            "options": {"num_predict": max_tokens, "temperature": 0},
        }
        last = result.sent
        try:
            async for line in self._lines("/api/generate", body):
                data = json.loads(line)
                now = time.perf_counter()
                if "error" in data:
                    result.error = "server_error"
                    return result
                if data.get("response"):
                    if result.first_token is None:
                        result.first_token = now
                    else:
                        result.gaps.append(now - last)
                    last = now
                if data.get("done"):
                    result.output_tokens = int(data.get("eval_count", 0))
                    result.prompt_tokens = int(data.get("prompt_eval_count", 0))
            result.finished = time.perf_counter()
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            result.error = _error_kind(exc)
        return result


class LocalTarget:
    """``slm://MODEL``: the model manager and worker process of this slmkit, no HTTP."""

    def __init__(self, model: str, label: str | None = None) -> None:
        from slmkit.config import Config
        from slmkit.models.manager import ModelManager
        from slmkit.store import ModelStore

        self.model = model
        self.label = label or f"slm://{model}"
        config = Config.from_env()
        self.manager = ModelManager(ModelStore(config.models), config)
        self.load_seconds: float | None = None

    async def request(self, prompt: str, max_tokens: int) -> RequestResult:
        from slmkit.answer import generation
        from slmkit.errors import SlmError
        from slmkit.pipe import EngineRequest, SamplingParams

        if self.load_seconds is None:
            _, self.load_seconds = await self.manager.load(self.model, -1)
        result = RequestResult(sent=time.perf_counter())
        options = (("temperature", 0.0), ("num_predict", max_tokens))
        request = EngineRequest(generation.new_request_id(), SamplingParams(), prompt=prompt, options=options)
        last = result.sent
        try:
            async for item in generation.stream(self.manager, self.model, request, -1):
                now = time.perf_counter()
                if isinstance(item, generation.Text):
                    if result.first_token is None:
                        result.first_token = now
                    else:
                        result.gaps.append(now - last)
                    last = now
                elif isinstance(item, generation.Done):
                    result.output_tokens = item.stats.completion_tokens
                    result.prompt_tokens = item.stats.prompt_tokens
            result.finished = time.perf_counter()
        except SlmError as exc:
            result.error = type(exc).__name__
        return result

    def pids(self) -> list[int]:
        import os

        return [os.getpid(), *(m.worker.pid for m in self.manager.loaded() if m.worker.pid)]

    async def close(self) -> None:
        await self.manager.close()


def make_target(spec: str, *, model: str | None, api: str, api_key: str | None) -> Target:
    """``slm://MODEL``, or a base URL: ``openai+http://...``/``ollama+http://...`` name the API
    style, a plain URL uses ``api`` (``"auto"`` asks the server). ``NAME=TARGET`` sets a label."""
    label = None
    head, sep, rest = spec.partition("=")
    if sep and "://" not in head:  # NAME=TARGET gives the target a label
        label, spec = head, rest
    if spec.startswith("slm://"):
        return LocalTarget(spec.removeprefix("slm://"), label)
    if not model:
        raise InvalidRequest("--model is required for URL targets")
    kind = api
    for style in ("openai", "ollama"):
        if spec.startswith(f"{style}+"):
            kind, spec = style, spec.removeprefix(f"{style}+")
    if kind == "auto":
        try:
            kind = (
                "ollama"
                if httpx.get(f"{spec.rstrip('/')}/api/version", timeout=5).status_code == 200
                else "openai"
            )
        except httpx.HTTPError:
            kind = "openai"
    cls = OllamaTarget if kind == "ollama" else OpenAITarget
    return cls(spec, model, api_key, label or f"{spec} ({kind}, {model})")
