"""How many CPU threads a model decodes with, and adapting that to a shared machine.

llama.cpp's CPU threads meet at a barrier after every operation. When one of them is
descheduled because another process wants a core, every other thread waits at the barrier
until it runs again (a ggml threadpool with polling off measured no better): on 2 cores,
one busy neighbour turned a 0.43 s answer into more than 120 s with 2 threads, and kept it
near 0.8 s with 1 (measured for llama-server and slmkit alike). So with
``SLM_NUM_THREADS=0`` (the default) a worker starts with the CPU it may use
(hardware.cpu_budget: cores, affinity and cgroup quota) and the governor below watches how
much CPU *other* processes take: threads = budget minus the cores they keep busy, at least
one, changed with llama.cpp's ``llama_set_n_threads`` between steps. An explicit
``SLM_NUM_THREADS`` is used as given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

INTERVAL = 0.25  # seconds between CPU samples
# A step that took STALLED times what the learned step costs predicted was held up (a thread
# descheduled at llama.cpp's barrier): the governor then samples again after SOON seconds
# instead of INTERVAL, from the stall on, so a neighbour that just appeared is not diluted by
# the quiet part of a window. A false alarm costs one early CPU sample. Measured
# (benchmarks/neighbour.py, first answer after a neighbour appears, AMD EPYC 2 cores): 0.83 /
# 0.87 / 0.95 s with it, 0.76 / 0.95 s without (idle 0.46-0.60 s): within this machine's noise.
STALLED = 2.0
SOON = 0.05
# Samples a new thread count must persist before it is applied. Fewer threads at once: a
# descheduled thread stalls every step (2.5x-100x slower answers); more threads only after
# two quiet samples (a thread too few costs at most ~2x for half a second): no flapping.
HOLD_DOWN = 1
HOLD_UP = 2
HOLD = HOLD_UP
BUSY = 0.6  # a neighbour using this share of a core or more takes that core


def fitting_threads(budget: int, others: float) -> int:
    """Threads that fit when other processes keep ``others`` cores busy (in cores, 0..n)."""
    taken = int(others + (1 - BUSY))  # 0.6 of a core or more takes it
    return max(1, min(budget, budget - taken))


class CpuMeter(Protocol):
    def __call__(self) -> tuple[float, float]:
        """(CPU seconds all processes used, CPU seconds this process used) so far."""
        ...


def system_meter() -> tuple[float, float]:
    import psutil

    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    own = psutil.Process().cpu_times()
    return busy, own.user + own.system


@dataclass
class ThreadGovernor:
    """Chooses the worker's thread count from the CPU other processes use; ``tick`` returns
    a new count when it should change."""

    budget: int  # most threads: the CPU this process may use
    meter: CpuMeter = system_meter
    clock: Callable[[], float] = time.monotonic
    current: int = 0  # threads in use (0: not yet set, the budget is applied)

    def __post_init__(self) -> None:
        self.current = self.current or self.budget
        self._last: tuple[float, float, float] | None = None  # (time, all busy, own)
        self._pending: tuple[int, int] | None = None  # (candidate, samples seen)
        self._interval = INTERVAL  # until the next sample (SOON after a stalled step)

    @classmethod
    def for_backend(cls, n_threads: int, backend: Any) -> ThreadGovernor | None:
        """The governor for a loaded backend: one when threads are automatic
        (``SLM_NUM_THREADS=0``) and the backend can change them, else None."""
        adapts = n_threads == 0 and backend.adaptive_threads
        return cls(backend.info.n_threads) if adapts else None

    def adjust(self, backend: Any) -> int | None:
        """:meth:`tick`, and the new count applied to ``backend`` (returned) when it changed."""
        threads = self.tick()
        if threads is not None:
            backend.set_threads(threads)
        return threads

    def stalled(self) -> None:
        """A step was held up: measure the next window from now, SOON seconds long (a
        window reaching back into quiet time would dilute a neighbour that just appeared).
        Nothing to give back with one thread."""
        if self.current > 1 and self._interval != SOON:
            self._interval = SOON
            self._last = (self.clock(), *self.meter())

    def tick(self) -> int | None:
        now = self.clock()
        if self._last is not None and now - self._last[0] < self._interval:
            return None
        self._interval = INTERVAL
        busy, own = self.meter()
        last, self._last = self._last, (now, busy, own)
        if last is None:
            return None
        elapsed = now - last[0]
        others = max(0.0, (busy - last[1]) - (own - last[2])) / elapsed if elapsed > 0 else 0.0
        wanted = fitting_threads(self.budget, others)
        if wanted == self.current:
            self._pending = None
            return None
        seen = self._pending[1] + 1 if self._pending and self._pending[0] == wanted else 1
        self._pending = (wanted, seen)
        if seen < (HOLD_DOWN if wanted < self.current else HOLD_UP):
            return None
        self.current, self._pending = wanted, None
        return wanted
