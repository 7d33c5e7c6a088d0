"""Which models are loaded: start workers on demand, keep them for ``keep_alive``, evict
the least recently used beyond ``max_loaded_models``, replace workers that died."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from slmkit.answer.profile import ModelProfile, load_profile, load_spec
from slmkit.config import Config
from slmkit.errors import InsufficientMemory, InvalidName, ServerBusy, SlmError
from slmkit.formats import projector_bytes
from slmkit.hardware import MemoryProbe, SystemMemory, cpu_budget
from slmkit.logs import FIELDS
from slmkit.models.memory import API_PROCESS, HEADROOM, Estimate
from slmkit.models.planning import LoadPlan, Resident, evictions
from slmkit.names import ModelName
from slmkit.pipe import EngineRequest, Event, LoadSpec, ModelInfo
from slmkit.store import ModelStore
from slmkit.units import human

log = logging.getLogger("slmkit.engine")
DEFAULT_PARALLEL = 4  # sequences per model when SLM_NUM_PARALLEL is 0 (auto)
PROFILE_RECHECK = 1.0  # seconds a cached profile is trusted without looking at the store


class Worker(Protocol):
    """What the manager needs of a worker; runner.WorkerProcess in production."""

    info: ModelInfo | None
    kv_tokens: int  # tokens in its KV cells, as last reported
    preemptions: int  # sequences preempted so far (resumed by re-prefill), as last reported

    @property
    def alive(self) -> bool: ...

    @property
    def in_flight(self) -> int: ...

    @property
    def pid(self) -> int | None: ...

    async def start(self, timeout: float) -> ModelInfo: ...

    def generate(self, request: EngineRequest) -> AsyncIterator[Event]: ...

    def end(self, request_id: str) -> None:
        """Stop a request now; its Finished event, with the stats so far, still comes."""

    async def embed(self, texts: list[str], priority: int = 0) -> tuple[list[list[float]], int]: ...

    async def rank(
        self, pairs: list[tuple[str, str]], priority: int = 0, max_doc_tokens: int = 0
    ) -> tuple[list[float], int]: ...

    async def tokenize(self, text: str, add_special: bool) -> list[int]: ...

    async def detokenize(self, tokens: list[int]) -> str: ...

    async def render(self, request: EngineRequest) -> list[int]:
        """The token ids the request's prompt becomes (chat template rendered), unrun."""

    async def stop(self, timeout: float = 5.0, reason: str = "the model was unloaded") -> None: ...


WorkerFactory = Callable[[LoadSpec, str | None, dict[str, Any]], Worker]


def _default_factory(spec: LoadSpec, template: str | None, options: dict[str, Any]) -> Worker:
    from slmkit.models.runner import WorkerProcess

    return WorkerProcess(spec, template, options)


@dataclass
class LoadedModel:
    profile: ModelProfile
    worker: Worker
    info: ModelInfo
    load_seconds: float  # how long the load took
    keep_alive: float  # seconds after the last request; negative = forever
    active: int = 0  # requests in flight
    last_used: float = field(default_factory=time.monotonic)
    expires_at: float | None = None  # monotonic deadline, None while busy or forever
    memory: int = 0  # bytes counted against the budget: max(estimate, RSS after load)
    retiring: bool = False  # asked to unload: goes when its requests finish; new ones wait
    gone: asyncio.Event = field(default_factory=asyncio.Event)  # set once it is unloaded

    @property
    def name(self) -> str:
        return self.profile.name

    def expires_wall(self) -> float | None:
        """Expiry as a Unix timestamp, for /api/ps."""
        if self.keep_alive < 0:
            return None
        remaining = (self.expires_at or time.monotonic() + self.keep_alive) - time.monotonic()
        return time.time() + max(0.0, remaining)


class Clock(Protocol):
    """Monotonic time and sleeping, for keep-alive expiry and the reaper (tests pass their own)."""

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class ModelManager:
    def __init__(
        self,
        store: ModelStore,
        config: Config,
        factory: WorkerFactory | None = None,
        memory: MemoryProbe | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock or SystemClock()
        self.factory = factory or _default_factory
        self.upstream_factory: Callable[[str, str], Worker] = self._upstream
        probe = memory or SystemMemory()
        headroom = API_PROCESS if probe.in_container() else HEADROOM
        self.budget = config.max_memory or max(0, probe.available() - headroom)  # bytes for models
        self._loaded: dict[str, LoadedModel] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._load_lock = asyncio.Lock()  # one load at a time: room is checked, then taken
        self._reaper: asyncio.Task[None] | None = None
        self._served: set[str] = set()  # models whose last load succeeded, with no crash since
        self._errors: dict[str, str] = {}  # why a model cannot serve now
        self._background: set[asyncio.Task[object]] = set()
        self.restarts: dict[str, int] = {}  # worker deaths seen per model (a metric)
        self._profiles: dict[str, tuple[float, ModelProfile]] = {}  # name -> (checked at, profile)
        # who hears of loads, unloads and evictions (server/events.py: GET /api/events)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    def emit(self, kind: str, model: str, **fields: Any) -> None:
        """Tell the listeners; a listener that fails is not the manager's problem."""
        event = {"type": kind, "model": model, "time": time.time(), **fields}
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break loading
                log.exception("an event listener failed")

    # -- profiles ------------------------------------------------------------------------
    async def profile(self, name: str) -> ModelProfile:
        """The model's resolved profile. Cached per name and manifest digest: a cached entry
        answers without touching the disk; it is re-checked off the event loop at most every
        PROFILE_RECHECK seconds (another process may have replaced the model), and dropped
        at once by :meth:`forget` when this server creates, copies, pulls or deletes it."""
        now = time.monotonic()
        cached = self._profiles.get(name)
        if cached is not None and now - cached[0] < PROFILE_RECHECK:
            return cached[1]
        profile = await asyncio.to_thread(self._read_profile, name, cached[1] if cached else None)
        self._profiles[name] = (now, profile)
        if profile.name != name:
            self._profiles[profile.name] = (now, profile)
        return profile

    def _read_profile(self, name: str, cached: ModelProfile | None) -> ModelProfile:
        record = self.store.get(name)
        if cached is not None and cached.digest == record.digest:
            return cached
        return load_profile(record)

    def forget(self, name: str | None = None) -> None:
        """Drop cached profiles (of ``name``'s model, or all): the store changed."""
        if name is None:
            self._profiles.clear()
            return
        try:
            display = ModelName.parse(name).display
        except InvalidName:
            display = name
        self._profiles.pop(name, None)
        self._profiles.pop(display, None)

    def _upstream(self, url: str, model: str) -> Worker:
        from slmkit.models.upstream import UpstreamWorker

        return UpstreamWorker(url, model, self.config.upstream_api_key)

    def can_serve(self, name: str) -> bool:
        """Whether ``name`` loaded successfully and its worker has not died since."""
        current = self._loaded.get(name)
        return name in self._served and (current is None or current.worker.alive)

    def last_error(self, name: str) -> str | None:
        return self._errors.get(name)

    def loaded(self) -> list[LoadedModel]:
        return [m for m in self._loaded.values() if m.worker.alive]

    def plan(
        self, profile: ModelProfile, *, n_ctx: int | None = None, n_parallel: int | None = None
    ) -> tuple[LoadSpec, Estimate]:
        """The load spec and memory estimate for a model, as the loader will load it.
        Context: ``n_ctx``, else the model's num_ctx PARAMETER, else SLM_CONTEXT_LENGTH.
        Slots: ``n_parallel``, else its num_parallel PARAMETER, else SLM_NUM_PARALLEL, else
        (0) the most slots up to DEFAULT_PARALLEL whose estimate fits the budget. It does not
        refuse: the caller compares the estimate with the budget (``_start``, ``plan_load``)."""
        assert profile.info is not None
        adapters = sum(path.stat().st_size for path in profile.adapters)
        adapters += projector_bytes(profile.record.projector)  # a vision model's projector
        n_ctx = n_ctx or profile.context_length or self.config.context_length
        fixed = n_parallel or profile.num_parallel or self.config.num_parallel
        fmt, facts = profile.format, profile.info
        kv_type = fmt.kv_type(facts, self.config.kv_cache_type)
        for n in [fixed] if fixed else range(DEFAULT_PARALLEL, 0, -1):
            need = fmt.estimate(
                facts,
                n_ctx,
                n,
                adapters=adapters,
                kv_type=kv_type,
                swa_full=self.config.swa_full,
                kv_pool=self.config.kv_pool,
            )
            if need.required <= self.budget or n == 1 or fixed:
                break
        return load_spec(profile, self.config, n_parallel=n, n_ctx=n_ctx), need

    async def plan_load(
        self, name: str, *, n_ctx: int | None = None, n_parallel: int | None = None
    ) -> LoadPlan:
        """What loading ``name`` would do now (``POST /api/plan``): the spec and estimate the
        loader computes, and the idle models it would unload to make room."""
        profile = await self.profile(name)
        current = self._loaded.get(profile.name)
        what_if = bool(n_ctx or n_parallel)  # a load with other settings: planned as a fresh one
        loaded = (
            not what_if
            and current is not None
            and current.worker.alive
            and current.profile.digest == profile.digest
        )
        if profile.upstream is not None or profile.info is None:
            spec, need = None, Estimate(0, 0, 0, 0, 0, 0, 1)
        else:
            spec, need = self.plan(profile, n_ctx=n_ctx, n_parallel=n_parallel)
        others = [r for r in self._residents() if r.name != profile.name]  # its old version goes
        victims, room = (
            ([], True)
            if loaded
            else evictions(others, need.required, self.budget, self.config.max_loaded_models)
        )
        threads = (spec.n_threads or cpu_budget()) if spec else 0
        from slmkit.store import cards

        card = await asyncio.to_thread(cards.read, self.store, profile.record)
        return LoadPlan(
            model=profile.name, format=profile.format.name if spec else "upstream", spec=spec,
            estimate=need, projector=projector_bytes(profile.record.projector), threads=threads,
            budget=self.budget, used=sum(r.memory for r in others), evicts=victims, room=room,
            loaded=loaded, what_if=what_if, speed=(card or {}).get("speed"),
        )  # fmt: skip

    def _residents(self) -> list[Resident]:
        """The budget's view of the loaded models; a pinned one counts as always busy."""
        return [
            Resident(str(k), m.memory, m.active > 0 or m.profile.pinned, m.last_used)
            for k, m in self._loaded.items()
        ]

    @contextlib.asynccontextmanager
    async def use(
        self, name: str, keep_alive: float | None = None, profile: ModelProfile | None = None
    ) -> AsyncIterator[tuple[LoadedModel, float]]:
        """Hold a loaded model for one request; yields (model, seconds spent loading).
        ``profile``: the one the request was resolved with, so both agree on the version."""
        profile = profile or await self.profile(name)
        model, load_seconds = await self._ensure(profile, keep_alive)
        model.active += 1
        model.expires_at = None
        try:
            yield model, load_seconds
        finally:
            model.active -= 1
            model.last_used = self.clock.monotonic()
            if keep_alive is not None:
                model.keep_alive = keep_alive
            if model.active == 0:
                if model.keep_alive == 0 or model.retiring:
                    await self.unload(model.name)
                elif model.keep_alive > 0:
                    model.expires_at = model.last_used + model.keep_alive

    async def load(self, name: str, keep_alive: float | None = None) -> tuple[LoadedModel, float]:
        """Load without running a request (``/api/generate`` with an empty prompt)."""
        async with self.use(name, keep_alive) as pair:
            return pair

    async def _ensure(self, profile: ModelProfile, keep_alive: float | None) -> tuple[LoadedModel, float]:
        key = profile.name
        async with self._locks.setdefault(key, asyncio.Lock()):
            await self._wait_retired(key)
            current = self._loaded.get(key)
            if current is not None and current.worker.alive and current.profile.digest == profile.digest:
                if keep_alive is not None:
                    current.keep_alive = keep_alive
                return current, 0.0
            if current is not None:
                crashed = not current.worker.alive
                if crashed:
                    self.restarts[key] = self.restarts.get(key, 0) + 1
                await self.unload(key, why="crashed" if crashed else "replaced")
            async with self._load_lock:
                return await self._start(profile, key, keep_alive)

    async def _start(
        self, profile: ModelProfile, key: str, keep_alive: float | None
    ) -> tuple[LoadedModel, float]:
        started = time.perf_counter()
        try:
            if profile.upstream is not None:  # a remote engine: no memory here, no worker process
                need = Estimate(0, 0, 0, 0, 0, 0, 1)
                worker = self.upstream_factory(profile.upstream["url"], profile.upstream["model"])
            else:
                # a corrupt file never loads (re-hashed only when it changed since its last check)
                assert profile.weights_digest is not None
                await asyncio.to_thread(self._check_weights, profile)
                spec, need = self.plan(profile)
                if need.required > self.budget:
                    raise InsufficientMemory(
                        f"model '{profile.name}' needs about {human(need.required)} (weights "
                        f"{human(need.weights)}, KV cache {human(need.kv_cache)}), more than the memory "
                        f"budget of {human(self.budget)} (SLM_MAX_MEMORY); try a smaller "
                        "SLM_CONTEXT_LENGTH or SLM_NUM_PARALLEL"
                    )
                await self._make_room(need.required, started + self.config.load_timeout, key)
                self.emit("loading", key, bytes=need.required, context=spec.n_ctx, parallel=spec.n_parallel)
                worker = self.factory(
                    spec,
                    profile.template,
                    {"max_waiting": self.config.max_queue, "template_timeout": self.config.template_timeout},
                )
            remaining = max(1.0, self.config.load_timeout - (time.perf_counter() - started))
            info = await worker.start(remaining)
        except SlmError as exc:
            self._served.discard(key)
            self._errors[key] = str(exc)
            self.emit("load_failed", key, error=str(exc))
            raise
        self._served.add(key)
        self._errors.pop(key, None)
        elapsed = time.perf_counter() - started
        model = LoadedModel(
            profile=profile,
            worker=worker,
            info=info,
            load_seconds=elapsed,
            keep_alive=self._keep_alive(profile) if keep_alive is None else keep_alive,
            memory=max(need.total, info.memory_bytes),
        )
        self._loaded[key] = model
        self._start_reaper()
        self.emit("loaded", key, seconds=round(elapsed, 3), memory=model.memory, pinned=profile.pinned)
        cpu = info.extra.get("cpu_backend") or ""
        log.info(
            "loaded %s in %.2fs (%d slots, %d threads, ~%s%s)", key, elapsed, info.n_parallel,
            info.n_threads, human(model.memory), f", CPU backend {cpu}" if cpu else "",
            extra={FIELDS: {"model": str(key), "seconds": round(elapsed, 2), "cpu_backend": cpu or None}},
        )  # fmt: skip
        return model, elapsed

    def _keep_alive(self, profile: ModelProfile) -> float:
        """A pinned model stays; else its keep_alive PARAMETER, else SLM_KEEP_ALIVE."""
        if profile.pinned:
            return -1.0
        return self.config.keep_alive if profile.keep_alive is None else profile.keep_alive

    def _check_weights(self, profile: ModelProfile) -> None:
        """Every weights blob checked (a folder model: each of its files, then its view)."""
        files = profile.record.manifest.model_files
        for layer in files.values() or [profile.record.manifest.model_layer]:
            self.store.blobs.check(layer.digest)
        profile.format.prepare(self.store, profile.record)

    async def _make_room(self, need: int, deadline: float, wanted: str = "") -> None:
        """Unload idle models, least recently used first, until ``need`` bytes and a model
        slot are free; wait (until ``deadline``) for busy ones to go idle."""
        while True:
            for key, model in list(self._loaded.items()):
                if not model.worker.alive:
                    await self.unload(key, why="crashed")
            victims, enough = evictions(self._residents(), need, self.budget, self.config.max_loaded_models)
            if victims:  # the plan's choice, one at a time (the rest may change meanwhile)
                await self.unload(victims[0], why="evicted", to_load=wanted)
                continue
            if enough:
                return
            if time.perf_counter() >= deadline:
                used = sum(m.memory for m in self._loaded.values())
                raise InsufficientMemory(
                    f"no room to load the model: {len(self._loaded)} busy models use "
                    f"{human(used)} of {human(self.budget)}; try again later"
                )
            await asyncio.sleep(0.1)

    def active_requests(self) -> int:
        return sum(m.active for m in self._loaded.values())

    async def _wait_retired(self, key: str) -> None:
        """A model asked to unload finishes its requests first; a new request waits for that
        (up to SLM_LOAD_TIMEOUT), then loads it afresh."""
        model = self._loaded.get(key)
        if model is None or not model.retiring:
            return
        try:
            await asyncio.wait_for(model.gone.wait(), self.config.load_timeout)
        except TimeoutError:
            raise ServerBusy(f"model '{key}' is unloading after its requests in flight; try again") from None

    async def stop(self, name: str, *, force: bool = False) -> bool:
        """Unload politely (keep_alive 0, `slm stop`): at once when idle, else when the
        requests in flight finish, as Ollama does. ``force`` cuts them (an admin's choice).
        Whether the model is gone now."""
        model = self._loaded.get(name)
        if model is None:
            return True
        if force or model.active == 0:
            await self.unload(
                name,
                reason="the model was stopped by an administrator" if force else "the model was unloaded",
                why="stopped",
            )
            return True
        model.retiring = True
        return False

    async def unload(
        self, name: str, reason: str = "the model was unloaded", *, why: str = "unloaded", **fields: Any
    ) -> bool:
        """Stop a model's worker (``reason``: what its requests in flight are told); ``why``
        (unloaded, expired, evicted, crashed, stopped, replaced, shutdown) goes to the events."""
        model = self._loaded.pop(name, None)
        if model is None:
            return False
        model.gone.set()
        await model.worker.stop(reason=reason)
        log.info("unloaded %s", name)
        self.emit("unloaded", name, why=why, **fields)
        return True

    def _start_reaper(self) -> None:
        if self._reaper is None or self._reaper.done():
            self._reaper = asyncio.get_running_loop().create_task(self._reap())

    async def _reap(self) -> None:
        """Every second, while models are loaded: :meth:`reap`."""
        while self._loaded:
            await self.clock.sleep(1.0)
            await self.reap()

    async def reap(self) -> None:
        """Unload expired idle models; replace crashed workers of the default model so that
        /ready comes back without waiting for a request (in the background: :meth:`settle`)."""
        now = self.clock.monotonic()
        for key, model in list(self._loaded.items()):
            if not model.worker.alive:
                log.warning("the worker of %s died", key)
                self.restarts[key] = self.restarts.get(key, 0) + 1
                self._served.discard(key)
                self._errors[key] = "the model worker crashed; reloading"
                await self.unload(key, why="crashed")
                if key == display_name(self.config.default_model):
                    self._spawn(self._reload(key))
            elif model.active == 0 and model.expires_at is not None and now >= model.expires_at:
                await self.unload(key, why="expired")

    async def settle(self) -> None:
        """Wait for the background work the reaper started (reloads)."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def _reload(self, name: str) -> None:
        try:
            await self.load(name)
        except SlmError as exc:
            log.warning("could not reload %s: %s", name, exc)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self, reason: str = "the server is shutting down") -> None:
        """Stop every worker; requests still running end with an error naming ``reason``."""
        if self._reaper is not None:
            self._reaper.cancel()
        for task in list(self._background):
            task.cancel()
        for key in list(self._loaded):
            await self.unload(key, reason, why="shutdown")


def display_name(name: str) -> str:
    """The display form of a configured model name (``smollm2`` -> ``smollm2:latest``)."""
    try:
        return ModelName.parse(name).display
    except InvalidName:
        return name
