"""Running a workload against targets, interleaved (A B A B ...) so ratios survive noise."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

from slmkit.bench.prompts import workload
from slmkit.bench.stats import RequestResult, aggregate
from slmkit.bench.targets import LocalTarget, Target


@dataclass
class Plan:
    concurrency: list[int] = field(default_factory=lambda: [1])
    num_requests: int = 8  # per target and concurrency level
    output_tokens: int = 64
    input_tokens: int | None = None  # None = the built-in chat prompts
    warmup: int = 1
    seed: int = 0
    rate: float | None = None  # open loop: requests per second (Poisson), else closed loop
    turns: int = 1  # >1: multi-turn conversations sharing growing prefixes
    duration: float | None = None  # seconds per target and level (repeats the workload), else num_requests
    slo_ttft: float | None = None
    slo_itl: float | None = None


class _Sampler(threading.Thread):
    """Peak RSS and CPU seconds of local serving processes."""

    def __init__(self, pids: Callable[[], list[int]]) -> None:
        super().__init__(daemon=True)
        self.pids, self.peak_rss, self.stop_flag = pids, 0, threading.Event()
        self.cpu_start = self._cpu()

    def _cpu(self) -> float:
        total = 0.0
        for pid in self.pids():
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def run(self) -> None:
        while not self.stop_flag.wait(0.1):
            rss = 0
            for pid in self.pids():
                try:
                    rss += psutil.Process(pid).memory_info().rss
                except psutil.Error:
                    pass
            self.peak_rss = max(self.peak_rss, rss)

    def finish(self) -> dict[str, float]:
        self.stop_flag.set()
        self.join()
        return {"peak_rss_bytes": self.peak_rss, "cpu_seconds": self._cpu() - self.cpu_start}


async def _batch(target: Target, prompts: list[str], plan: Plan, concurrency: int) -> list[RequestResult]:
    gate = asyncio.Semaphore(concurrency)
    rng = __import__("random").Random(plan.seed)

    async def one(prompt: str) -> RequestResult:
        async with gate:
            return await target.request(prompt, plan.output_tokens)

    tasks = []
    for prompt in prompts:
        tasks.append(asyncio.ensure_future(one(prompt)))
        if plan.rate:
            await asyncio.sleep(rng.expovariate(plan.rate))
    return list(await asyncio.gather(*tasks))


async def run(
    targets: list[Target], plan: Plan, progress: Callable[[str], None] = lambda s: None
) -> dict[str, object]:
    prompts = workload(plan.num_requests, plan.input_tokens, plan.seed, plan.turns)
    for target in targets:  # warm-up: load models, fill caches
        for prompt in workload(plan.warmup, plan.input_tokens, plan.seed + 999):
            await target.request(prompt, min(8, plan.output_tokens))
    samplers = {t.label: _Sampler(t.pids) for t in targets if isinstance(t, LocalTarget)}
    for sampler in samplers.values():
        sampler.start()
    levels = []
    for concurrency in plan.concurrency:
        collected: dict[str, list[RequestResult]] = {t.label: [] for t in targets}
        busy: dict[str, float] = dict.fromkeys(collected, 0.0)
        rounds = max(1, plan.num_requests // concurrency)
        chunks = [
            prompts[i * concurrency : (i + 1) * concurrency] or prompts[:concurrency] for i in range(rounds)
        ]
        i = 0
        while i < len(chunks) or (plan.duration and min(busy.values()) < plan.duration):
            chunk = chunks[i % len(chunks)]
            i += 1
            for target in targets:  # A B A B ...: every target sees the same moments
                progress(f"concurrency {concurrency}: round {i} on {target.label}")
                started = time.perf_counter()
                collected[target.label] += await _batch(target, chunk, plan, concurrency)
                busy[target.label] += time.perf_counter() - started
        levels.append(
            {
                "concurrency": concurrency,
                "targets": {
                    label: aggregate(rs, slo_ttft=plan.slo_ttft, slo_itl=plan.slo_itl, busy=busy[label])
                    for label, rs in collected.items()
                },
                "ttft_samples": {
                    label: [r.ttft for r in rs if r.ttft is not None] for label, rs in collected.items()
                },
            }
        )
    resources = {label: s.finish() for label, s in samplers.items()}
    for target in targets:
        if isinstance(target, LocalTarget) and target.load_seconds is not None:
            resources.setdefault(target.label, {})["load_seconds"] = target.load_seconds
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": psutil.cpu_count(logical=False), "memory_bytes": psutil.virtual_memory().total},
        "plan": plan.__dict__,
        "targets": [t.label for t in targets],
        "levels": levels,
        "resources": resources,
    }
