"""An in-process Worker for server tests: EngineCore over the FakeBackend, no processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from slmkit.config import Config
from slmkit.engine.core import EngineCore
from slmkit.errors import ModelLoadError, SlmError
from slmkit.pipe import EngineRequest, Event, Failed, Finished, LoadSpec, ModelInfo
from tests.unit.engine.fakes import FakeBackend


class FakeWorker:
    """One fake model worker. Configured through its constructor only (a test that wants
    another answer or context passes a :class:`FakeWorkers` factory): nothing on the class
    changes, so no test sees another's settings."""

    def __init__(
        self,
        spec: LoadSpec,
        template: str | None,
        options: dict[str, Any],
        *,
        script: bytes = b"Hello world",  # every answer
        n_ctx: int = 64,  # context per slot, in tokens (bytes)
    ) -> None:
        self.spec = spec
        self.script = script
        self.n_ctx = n_ctx
        self.backend = FakeBackend(script, n_ctx=n_ctx, fail_after=None)
        self.core = EngineCore(self.backend, template)
        self.info: ModelInfo | None = None
        self._alive = False
        self.step_delay = 0.0  # seconds per engine step
        self.kv_tokens = 0
        self.preemptions = 0
        self.requests: list[EngineRequest] = []  # every generation asked of it
        self.in_flight = 0
        self.pid = 4242
        self._pending: dict[str, list[Event]] = {}  # events stepped out for each request

    @property
    def alive(self) -> bool:
        return self._alive

    async def start(self, timeout: float) -> ModelInfo:
        if self._marked(b"broken model"):
            raise ModelLoadError("llama.cpp could not load the model: bad tensor")
        if self._marked(b"failing model"):
            self.backend.fail_after = 3
        self.step_delay = 0.1 if self._marked(b"slow model") else 0.0
        self._alive = True
        self.info = self.backend.info
        return self.info

    def _marked(self, marker: bytes) -> bool:
        from pathlib import Path

        return marker in Path(self.spec.model_path).read_bytes()

    async def generate(self, request: EngineRequest) -> AsyncIterator[Event]:
        self.requests.append(request)
        try:
            self.core.add_request(request)
        except SlmError as exc:
            yield Failed(exc)
            return
        self.in_flight += 1
        finished = False
        mine = self._pending.setdefault(request.request_id, [])
        try:
            while not finished:
                await asyncio.sleep(self.step_delay)
                if not mine:  # one step for every request in flight; each takes its own events
                    for rid, event in self.core.step():
                        self._pending.setdefault(rid, []).append(event)
                while mine and not finished:
                    event = mine.pop(0)
                    finished = isinstance(event, Finished | Failed)
                    yield event
        finally:
            self._pending.pop(request.request_id, None)
            self.in_flight -= 1
            self.kv_tokens = self.core.kv_tokens
            self.preemptions = self.core.scheduler.preemptions
            if not finished:
                self.core.abort(request.request_id)

    def end(self, request_id: str) -> None:
        for rid, event in self.core.abort(request_id):
            self._pending.setdefault(rid, []).append(event)

    async def tokenize(self, text: str, add_special: bool) -> list[int]:
        return self.core.tokenize(text, add_special)

    async def detokenize(self, tokens: list[int]) -> str:
        return self.core.detokenize(tokens)

    async def render(self, request: EngineRequest) -> list[int]:
        return self.core.render(request)

    async def embed(self, texts: list[str], priority: int = 0) -> tuple[list[list[float]], int]:
        return self.backend.embed(texts)

    async def rank(
        self, pairs: list[tuple[str, str]], priority: int = 0, max_doc_tokens: int = 0
    ) -> tuple[list[float], int]:
        return self.backend.rank(pairs, max_doc_tokens)

    async def stop(self, timeout: float = 5.0, reason: str = "the model was unloaded") -> None:
        self._alive = False


@dataclass
class FakeWorkers:
    """A worker factory for one test: the answer and context its workers get, and every
    worker it made (``worker_factory=FakeWorkers(script=...)``)."""

    script: bytes = b"Hello world"
    n_ctx: int = 64
    instances: list[FakeWorker] = field(default_factory=list)

    def __call__(self, spec: LoadSpec, template: str | None, options: dict[str, Any]) -> FakeWorker:
        worker = FakeWorker(spec, template, options, script=self.script, n_ctx=self.n_ctx)
        self.instances.append(worker)
        return worker


def make_config(tmp_path: Any, **overrides: Any) -> Config:
    return Config.from_env({"SLM_MODELS": str(tmp_path / "models")}, **overrides)
