"""ModelManager with fake workers and a fake memory probe: budget, eviction, crashes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from slmkit.answer.profile import load_profile
from slmkit.config import Config
from slmkit.errors import InsufficientMemory
from slmkit.models.manager import ModelManager
from slmkit.pipe import LoadSpec
from slmkit.store import ModelStore
from tests.ggufs import write_tiny_gguf
from tests.unit.server.fakes import FakeWorker, FakeWorkers

GiB = 1024**3
MiB = 1024**2


class FixedMemory:
    def __init__(self, available: int, container: bool = False) -> None:
        self.value = available
        self.container = container

    def available(self) -> int:
        return self.value

    def in_container(self) -> bool:
        return self.container


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    s = ModelStore(tmp_path / "models")
    gguf = write_tiny_gguf(tmp_path / "tiny.gguf")
    for name in ("a", "b", "c"):
        s.import_gguf(name, gguf, system=name)  # same weights, different manifests
    return s


class FakeClock:
    """Monotonic time that moves only when the test says (``advance``); the reaper's sleep
    returns at once, so a test drives it with ``reap()`` and never waits real seconds."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    async def sleep(self, seconds: float) -> None:
        await asyncio.Event().wait()  # the background reaper never ticks by itself


def manager(
    store: ModelStore, workers: FakeWorkers | None = None, clock: FakeClock | None = None, **settings: object
) -> ModelManager:
    config = Config.from_env({"SLM_MODELS": str(store.root)}, **settings)
    return ModelManager(store, config, workers or FakeWorkers(), memory=FixedMemory(8 * GiB), clock=clock)


async def until(check: Callable[[], bool], timeout: float = 60.0) -> None:
    """Yield to the event loop until ``check()`` holds (a deadline, not a guess at timing)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the condition never held"
        await asyncio.sleep(0.001)


def test_budget_too_small_fails_before_any_worker_starts(store: ModelStore) -> None:
    workers = FakeWorkers()
    m = manager(store, workers, max_memory=1024)
    with pytest.raises(InsufficientMemory, match="SLM_MAX_MEMORY"):
        asyncio.run(m.load("a:latest"))
    assert workers.instances == []
    assert "budget" in (m.last_error("a:latest") or "")


def test_automatic_budget_leaves_headroom() -> None:
    config = Config.from_env({})
    m = ModelManager(ModelStore(Path("/nonexistent")), config, FakeWorker, memory=FixedMemory(3 * GiB))
    assert m.budget == 2 * GiB


def test_automatic_budget_in_a_container_leaves_room_for_the_api_process_only() -> None:
    """Under a cgroup limit the OS is outside the limit: 1 GiB of headroom would leave a
    container limited to 928 MiB (Compose, for SmolLM2) no budget at all."""
    config = Config.from_env({})
    m = ModelManager(
        ModelStore(Path("/nonexistent")), config, FakeWorker, memory=FixedMemory(700 * MiB, True)
    )
    assert m.budget == 700 * MiB - 256 * MiB


def test_system_memory_knows_a_container_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    from slmkit import hardware

    monkeypatch.setattr(hardware, "cgroup_room", lambda: 300 * MiB)
    assert hardware.SystemMemory().in_container() and hardware.SystemMemory().available() == 300 * MiB
    monkeypatch.setattr(hardware, "cgroup_room", lambda: None)
    assert not hardware.SystemMemory().in_container()


def test_auto_parallel_shrinks_to_fit(store: ModelStore) -> None:
    m = manager(store)
    profile = load_profile(store.get("a"))
    spec4, need4 = m.plan(profile)
    assert spec4.n_parallel == 4
    m.budget = need4.total - 1
    spec, need = m.plan(profile)
    assert spec.n_parallel < 4 and need.total <= m.budget


def test_kv_cache_type_reaches_the_load_and_the_memory_estimate(store: ModelStore) -> None:
    profile = load_profile(store.get("a"))
    spec, f16 = manager(store, num_parallel=1).plan(profile)
    assert (spec.kv_cache_type, spec.flash_attention) == ("f16", "auto")
    spec, q8 = manager(store, num_parallel=1, kv_cache_type="q8_0", flash_attention="on").plan(profile)
    assert (spec.kv_cache_type, spec.flash_attention) == ("q8_0", "on")
    assert q8.kv_cache == pytest.approx(f16.kv_cache * 17 / 32, rel=0.01)  # 34 bytes per 32 values


def test_max_loaded_models_evicts_least_recently_used(store: ModelStore) -> None:
    async def scenario() -> list[list[str]]:
        m = manager(store, max_loaded_models=2)
        seen = []
        for name in ("a", "b", "a", "c"):
            await m.load(f"{name}:latest")
            seen.append(sorted(x.name for x in m.loaded()))
        await m.close()
        return seen

    assert asyncio.run(scenario()) == [
        ["a:latest"],
        ["a:latest", "b:latest"],
        ["a:latest", "b:latest"],
        ["a:latest", "c:latest"],
    ]


def test_memory_budget_evicts_idle_models(store: ModelStore) -> None:
    async def scenario() -> list[str]:
        m = manager(store)
        first, _ = await m.load("a:latest")
        m.budget = int(first.memory * 1.5)  # room for one model only
        await m.load("b:latest")
        names = [x.name for x in m.loaded()]
        await m.close()
        return names

    assert asyncio.run(scenario()) == ["b:latest"]


def test_busy_model_is_waited_for_then_evicted(store: ModelStore) -> None:
    async def scenario() -> list[str]:
        m = manager(store, max_loaded_models=1)
        order = []

        release = asyncio.Event()

        async def hold_a() -> None:
            async with m.use("a:latest"):
                order.append("a in use")
                await release.wait()
            order.append("a released")

        task = asyncio.create_task(hold_a())
        await until(lambda: order == ["a in use"])
        load_b = asyncio.create_task(m.load("b:latest"))
        await until(m._load_lock.locked)  # b is loading: waiting for room
        release.set()
        await load_b
        order.append("b loaded")
        await task
        await m.close()
        return order

    assert asyncio.run(scenario()) == ["a in use", "a released", "b loaded"]


def test_busy_models_and_no_room_fail_after_the_load_timeout(store: ModelStore) -> None:
    async def scenario() -> None:
        m = manager(store, max_loaded_models=1, load_timeout=0.3)
        async with m.use("a:latest"):
            with pytest.raises(InsufficientMemory, match="busy"):
                await m.load("b:latest")
        await m.close()

    asyncio.run(scenario())


def test_crash_makes_default_unready_then_it_reloads(store: ModelStore) -> None:
    async def scenario() -> list[bool]:
        m = manager(store, clock=FakeClock(), default_model="a:latest")
        model, _ = await m.load("a:latest")
        states = [m.can_serve("a:latest")]
        model.worker._alive = False  # type: ignore[attr-defined]  # the process died
        states.append(m.can_serve("a:latest"))
        await m.reap()  # what the reaper does each second
        await m.settle()  # its reload
        states.append(m.can_serve("a:latest"))
        states.append(m.loaded()[0].worker is not model.worker)
        await m.close()
        return states

    assert asyncio.run(scenario()) == [True, False, True, True]


def test_keep_alive_expiry_unloads_an_idle_model(store: ModelStore) -> None:
    async def scenario() -> list[list[str]]:
        clock = FakeClock()
        m = manager(store, clock=clock)
        await m.load("a:latest", keep_alive=5)
        seen = []
        for step in (4.0, 2.0):  # 4 s: still loaded; 6 s: expired
            clock.advance(step)
            await m.reap()
            seen.append([x.name for x in m.loaded()])
        await m.close()
        return seen

    assert asyncio.run(scenario()) == [["a:latest"], []]


def test_keep_alive_zero_unloads_after_use(store: ModelStore) -> None:
    async def scenario() -> list[str]:
        m = manager(store)
        async with m.use("a:latest", keep_alive=0):
            pass
        return [x.name for x in m.loaded()]

    assert asyncio.run(scenario()) == []


def test_model_num_parallel_parameter_wins(store: ModelStore, tmp_path: Path) -> None:
    store.import_gguf("two", write_tiny_gguf(tmp_path / "t.gguf"), params={"num_parallel": 2, "num_ctx": 512})
    spec, _ = manager(store, num_parallel=6).plan(load_profile(store.get("two")))
    assert (spec.n_parallel, spec.n_ctx) == (2, 512)
    spec, _ = manager(store, num_parallel=6).plan(load_profile(store.get("a")))
    assert (spec.n_parallel, spec.n_ctx) == (6, 4096)


def test_a_corrupt_model_refuses_to_load(store: ModelStore) -> None:
    from slmkit.errors import IntegrityError

    path = store.get("a").model_path
    path.chmod(0o644)
    path.write_bytes(path.read_bytes()[:-1] + b"?")
    m = manager(store)
    with pytest.raises(IntegrityError, match="corrupt"):
        asyncio.run(m.load("a:latest"))


def test_stop_waits_for_requests_in_flight_and_new_ones_wait_for_the_reload(store: ModelStore) -> None:
    """keep_alive 0 / `slm stop` from one user never cuts another user's answer."""

    async def scenario() -> tuple[bool, bool, bool, int]:
        m = manager(store)
        finished = asyncio.Event()

        answering, done = asyncio.Event(), asyncio.Event()

        async def victim() -> None:
            async with m.use("a:latest") as (loaded, _):
                answering.set()
                await done.wait()  # a long answer in flight
                assert loaded.worker.alive
            finished.set()

        task = asyncio.create_task(victim())
        await answering.wait()
        first = m.loaded()[0].worker
        await m.stop("a:latest")  # another user's keep_alive: 0
        still_loaded = first.alive and not finished.is_set()
        done.set()  # the victim's answer ends
        async with m.use("a:latest") as (later, _):  # waits for the victim, then a fresh load
            fresh = later.worker is not first
        await task
        await m.close()
        return still_loaded, fresh, not first.alive, len(m.loaded())

    still_loaded, fresh, retired, _ = asyncio.run(scenario())
    assert still_loaded and fresh and retired


def test_stop_unloads_an_idle_model_at_once_and_force_cuts(store: ModelStore) -> None:
    async def scenario() -> tuple[int, bool]:
        m = manager(store)
        await m.load("a:latest")
        await m.stop("a:latest")
        idle_gone = len(m.loaded())
        async with m.use("b:latest") as (loaded, _):
            await m.stop("b:latest", force=True)
            cut = not loaded.worker.alive
        await m.close()
        return idle_gone, cut

    assert asyncio.run(scenario()) == (0, True)


def test_slmkit_load_honours_every_load_setting_the_server_does(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One LoadSpec builder (answer/profile.py load_spec): the spec slmkit.load opens is the
    server's, setting for setting (it once ignored the KV type, flash attention, unified KV)."""
    from slmkit.local import LocalModel
    from tests.unit.engine.fakes import FakeBackend

    settings: dict[str, object] = {
        "num_parallel": 1, "kv_cache_type": "q8_0", "flash_attention": "on", "kv_unified": True,
        "draft_tokens": 4, "context_length": 1024, "num_threads": 1, "kv_pool": 512,
    }  # fmt: skip
    served, _ = manager(store, **settings).plan(load_profile(store.get("a")))
    opened: list[LoadSpec] = []
    monkeypatch.setattr(
        "slmkit.engine.backends.open_backend", lambda spec: opened.append(spec) or FakeBackend()
    )
    config = Config.from_env({"SLM_MODELS": str(store.root)}, **settings)
    LocalModel.open("a", config=config, store=store).close()
    assert opened == [served]
    assert (served.kv_cache_type, served.flash_attention, served.kv_unified) == ("q8_0", "on", True)
    assert (served.draft_tokens, served.n_ctx, served.n_threads, served.kv_pool) == (4, 1024, 1, 512)


def test_slmkit_load_gives_a_core_to_a_busy_neighbour(store: ModelStore) -> None:
    """SLM_NUM_THREADS=0 in-process too: the governor runs between steps, as in a worker."""
    from slmkit.engine.threads import ThreadGovernor
    from slmkit.local import LocalModel
    from tests.unit.engine.fakes import FakeBackend

    profile = load_profile(store.get("a"))
    pinned = Config.from_env({"SLM_MODELS": str(store.root)}, num_threads=2)
    assert LocalModel(profile, FakeBackend(), pinned).governor is None
    backend = FakeBackend()
    backend.set_threads(2)
    model = LocalModel(profile, backend, Config.from_env({"SLM_MODELS": str(store.root)}))
    assert model.governor is not None
    now = [0.0]

    def clock() -> float:
        now[0] += 0.5  # every step is a sample apart
        return now[0]

    def neighbour_busy() -> tuple[float, float]:
        return now[0] * 1.0, 0.0  # others keep one core busy; this process uses none

    model.governor = ThreadGovernor(2, meter=neighbour_busy, clock=clock)
    assert model.generate("hi", max_tokens=8).text
    assert backend.info.n_threads == 1


def test_the_plan_is_what_the_load_does(store: ModelStore) -> None:
    """POST /api/plan and the loader share the spec, the estimate and the eviction choice."""

    async def scenario() -> None:
        workers = FakeWorkers()
        m = manager(store, workers, max_loaded_models=2)
        await m.load("a:latest")
        await m.load("b:latest")
        m._loaded["a:latest"].last_used -= 10  # a is the least recently used
        plan = await m.plan_load("c:latest")
        assert plan.evicts == ["a:latest"] and plan.room and not plan.loaded and plan.fits
        await m.load("c:latest")
        assert sorted(x.name for x in m.loaded()) == ["b:latest", "c:latest"]  # as planned
        loaded = m._loaded["c:latest"]
        assert workers.instances[-1].spec == plan.spec  # the same load, to the field
        assert loaded.memory >= plan.estimate.total
        again = await m.plan_load("c:latest")
        assert again.loaded and again.evicts == []
        what_if = await m.plan_load("a:latest", n_ctx=1024, n_parallel=2)
        assert what_if.what_if and what_if.spec is not None
        assert (what_if.spec.n_parallel, what_if.estimate.n_parallel, what_if.spec.n_ctx) == (2, 2, 1024)
        await m.close()

    asyncio.run(scenario())


def test_a_plan_over_the_budget_says_so_instead_of_failing(store: ModelStore) -> None:
    async def scenario() -> None:
        m = manager(store, max_memory=1024)
        plan = await m.plan_load("a:latest")
        assert not plan.fits and plan.to_json()["budget"]["bytes"] == 1024
        assert plan.to_json()["bytes"]["required"] > 1024
        await m.close()

    asyncio.run(scenario())


def test_evictions_pick_idle_models_least_recently_used_until_it_fits() -> None:
    from slmkit.models.planning import Resident, evictions

    loaded = [Resident("old", 300, False, 1.0), Resident("busy", 300, True, 0.5),
              Resident("new", 300, False, 2.0)]  # fmt: skip
    assert evictions(loaded, 100, 1000, 8) == ([], True)  # fits already
    assert evictions(loaded, 400, 1000, 8) == (["old"], True)
    assert evictions(loaded, 800, 1000, 8) == (["old", "new"], False)  # the busy one: wait for it
    assert evictions(loaded, 50, 1000, 3) == (["old"], True)  # a model slot, not memory


def test_events_tell_loads_evictions_and_expiry_in_order(store: ModelStore) -> None:
    clock = FakeClock()

    async def scenario() -> list[tuple[str, str, str]]:
        m = manager(store, clock=clock, max_loaded_models=1)
        seen: list[dict[str, object]] = []
        m.listeners.append(seen.append)
        await m.load("a:latest", keep_alive=60)
        await m.load("b:latest", keep_alive=60)  # a goes, to make room
        clock.advance(61)
        await m.reap()  # b expires
        await m.close()
        return [(str(e["type"]), str(e["model"]), str(e.get("why", e.get("to_load", "")))) for e in seen]

    assert asyncio.run(scenario()) == [
        ("loading", "a:latest", ""), ("loaded", "a:latest", ""),
        ("unloaded", "a:latest", "evicted"), ("loading", "b:latest", ""), ("loaded", "b:latest", ""),
        ("unloaded", "b:latest", "expired"),
    ]  # fmt: skip


def test_a_pinned_model_is_never_evicted_nor_expired_and_keep_alive_comes_from_the_model(
    store: ModelStore, tmp_path: Path
) -> None:
    gguf = write_tiny_gguf(tmp_path / "pinned.gguf")
    store.import_gguf("pinned", gguf, system="p", params={"pin": True})
    store.import_gguf("brief", gguf, system="k", params={"keep_alive": 5.0})
    clock = FakeClock()

    async def scenario() -> None:
        m = manager(store, clock=clock, max_loaded_models=2, load_timeout=0.3)
        await m.load("pinned:latest")
        await m.load("brief:latest")
        assert m._loaded["brief:latest"].keep_alive == 5.0  # the model's PARAMETER keep_alive
        assert m._loaded["pinned:latest"].keep_alive < 0  # pinned: kept
        plan = await m.plan_load("a:latest")
        assert plan.evicts == ["brief:latest"]  # never the pinned one
        await m.load("a:latest")
        assert sorted(x.name for x in m.loaded()) == ["a:latest", "pinned:latest"]
        clock.advance(10_000)
        await m.reap()
        assert "pinned:latest" in [x.name for x in m.loaded()]
        await m.close()

    asyncio.run(scenario())
