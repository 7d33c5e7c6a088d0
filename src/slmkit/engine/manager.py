"""Which models are loaded: start workers on demand, keep them for ``keep_alive``, evict
the least recently used beyond ``max_loaded_models``, replace workers that died."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from slmkit.config import Config
from slmkit.engine.llama import LoadSpec
from slmkit.engine.types import EngineRequest, Event, ModelInfo
from slmkit.errors import SlmError
from slmkit.store import ModelRecord, ModelStore

log = logging.getLogger("slmkit.engine")
DEFAULT_PARALLEL = 4  # sequences per model when SLM_NUM_PARALLEL is 0 (auto)


class Worker(Protocol):
    """What the manager needs of a worker; runner.WorkerProcess in production."""

    info: ModelInfo | None

    @property
    def alive(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    async def start(self, timeout: float) -> ModelInfo: ...

    def generate(self, request: EngineRequest) -> AsyncIterator[Event]: ...

    async def embed(self, texts: list[str]) -> tuple[list[list[float]], int]: ...

    async def stop(self, timeout: float = 5.0) -> None: ...


WorkerFactory = Callable[[LoadSpec, str | None, dict[str, Any]], Worker]


def _default_factory(spec: LoadSpec, template: str | None, options: dict[str, Any]) -> Worker:
    from slmkit.engine.runner import WorkerProcess

    return WorkerProcess(spec, template, options)


@dataclass
class LoadedModel:
    record: ModelRecord
    worker: Worker
    info: ModelInfo
    load_seconds: float  # how long the load took
    keep_alive: float  # seconds after the last request; negative = forever
    active: int = 0  # requests in flight
    last_used: float = field(default_factory=time.monotonic)
    expires_at: float | None = None  # monotonic deadline, None while busy or forever

    @property
    def name(self) -> str:
        return self.record.name.display

    def expires_wall(self) -> float | None:
        """Expiry as a Unix timestamp, for /api/ps."""
        if self.keep_alive < 0:
            return None
        remaining = (self.expires_at or time.monotonic() + self.keep_alive) - time.monotonic()
        return time.time() + max(0.0, remaining)


class ModelManager:
    def __init__(self, store: ModelStore, config: Config, factory: WorkerFactory | None = None) -> None:
        self.store = store
        self.config = config
        self.factory = factory or _default_factory
        self._loaded: dict[str, LoadedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._served: set[str] = set()  # models that loaded at least once
        self._errors: dict[str, str] = {}  # last load error per model

    def can_serve(self, name: str) -> bool:
        """Whether ``name`` loaded successfully and has not failed to load since."""
        return name in self._served or name in self._loaded

    def last_error(self, name: str) -> str | None:
        return self._errors.get(name)

    def loaded(self) -> list[LoadedModel]:
        return [m for m in self._loaded.values() if m.worker.alive]

    def _spec(self, record: ModelRecord) -> LoadSpec:
        return LoadSpec(
            model_path=str(record.model_path),
            n_ctx=self.config.context_length,
            n_parallel=self.config.num_parallel or DEFAULT_PARALLEL,
            n_threads=self.config.num_threads,
        )

    @contextlib.asynccontextmanager
    async def use(
        self, name: str, keep_alive: float | None = None
    ) -> AsyncIterator[tuple[LoadedModel, float]]:
        """Hold a loaded model for one request; yields (model, seconds spent loading)."""
        record = self.store.get(name)
        model, load_seconds = await self._ensure(record, keep_alive)
        model.active += 1
        model.expires_at = None
        try:
            yield model, load_seconds
        finally:
            model.active -= 1
            model.last_used = time.monotonic()
            if keep_alive is not None:
                model.keep_alive = keep_alive
            if model.active == 0:
                if model.keep_alive == 0:
                    await self.unload(model.name)
                elif model.keep_alive > 0:
                    model.expires_at = model.last_used + model.keep_alive

    async def load(self, name: str, keep_alive: float | None = None) -> tuple[LoadedModel, float]:
        """Load without running a request (``/api/generate`` with an empty prompt)."""
        async with self.use(name, keep_alive) as pair:
            return pair

    async def _ensure(self, record: ModelRecord, keep_alive: float | None) -> tuple[LoadedModel, float]:
        key = record.name.display
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self._loaded.get(key)
            if current is not None and current.worker.alive and current.record.digest == record.digest:
                if keep_alive is not None:
                    current.keep_alive = keep_alive
                return current, 0.0
            if current is not None:
                await self.unload(key)
            await self._make_room()
            started = time.perf_counter()
            worker = self.factory(
                self._spec(record),
                record.template,
                {
                    "max_waiting": self.config.max_queue,
                    "template_timeout": self.config.template_timeout,
                },
            )
            try:
                info = await worker.start(self.config.load_timeout)
            except SlmError as exc:
                self._served.discard(key)
                self._errors[key] = str(exc)
                raise
            self._served.add(key)
            self._errors.pop(key, None)
            elapsed = time.perf_counter() - started
            model = LoadedModel(
                record=record,
                worker=worker,
                info=info,
                load_seconds=elapsed,
                keep_alive=self.config.keep_alive if keep_alive is None else keep_alive,
            )
            self._loaded[key] = model
            self._start_reaper()
            log.info("loaded %s in %.2fs", key, elapsed)
            return model, elapsed

    async def _make_room(self) -> None:
        for key, model in list(self._loaded.items()):
            if not model.worker.alive:
                await self.unload(key)
        while len(self._loaded) >= self.config.max_loaded_models:
            idle = [m for m in self._loaded.values() if m.active == 0]
            if not idle:
                return  # everything busy: run over the limit rather than fail requests
            victim = min(idle, key=lambda m: m.last_used)
            await self.unload(victim.name)

    async def unload(self, name: str) -> bool:
        model = self._loaded.pop(name, None)
        if model is None:
            return False
        await model.worker.stop()
        log.info("unloaded %s", name)
        return True

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        while self._loaded:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for key, model in list(self._loaded.items()):
                expired = model.active == 0 and model.expires_at is not None and now >= model.expires_at
                if expired or not model.worker.alive:
                    await self.unload(key)

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        for key in list(self._loaded):
            await self.unload(key)
