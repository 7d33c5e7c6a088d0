"""Thread counts: the CPU budget (cores, affinity, cgroup quota) and the governor that gives
cores back when other processes keep them busy."""

from __future__ import annotations

from pathlib import Path

import pytest

from slmkit.engine.threads import HOLD_DOWN, HOLD_UP, INTERVAL, SOON, ThreadGovernor, fitting_threads
from slmkit.hardware import cgroup_dirs, cgroup_room, cpu_budget, cpu_quota


@pytest.mark.parametrize(
    ("budget", "others", "threads"),
    [(2, 0.0, 2), (2, 0.5, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 3.0, 1), (8, 2.7, 5), (1, 1.0, 1)],
)
def test_threads_leave_the_cores_others_keep_busy(budget: int, others: float, threads: int) -> None:
    assert fitting_threads(budget, others) == threads


class Machine:
    """A fake CPU meter: ``others`` cores busy elsewhere, ``own`` in this process."""

    def __init__(self) -> None:
        self.now = 0.0
        self.others = 0.0
        self.own = 1.0
        self.busy_total = 0.0
        self.own_total = 0.0

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.busy_total += (self.others + self.own) * seconds
        self.own_total += self.own * seconds

    def meter(self) -> tuple[float, float]:
        return self.busy_total, self.own_total


def test_the_governor_gives_a_core_back_and_takes_it_again_without_flapping() -> None:
    m = Machine()
    g = ThreadGovernor(2, meter=m.meter, clock=lambda: m.now)
    assert g.current == 2 and g.tick() is None  # the first sample only sets the baseline
    changes = []
    for others in [0.0] * 3 + [1.0] * 4 + [0.0] * 4:
        m.others = others
        m.advance(INTERVAL)
        changes.append(g.tick())
    # a neighbour's core is given back at the first sample that sees it (a descheduled thread
    # stalls every step), and taken again only after two quiet samples (no flapping)
    assert (HOLD_DOWN, HOLD_UP) == (1, 2)
    assert changes == [None, None, None, 1, None, None, None, None, 2, None, None]
    m.others = 0.0
    m.advance(INTERVAL)
    assert g.tick() is None and g.current == 2  # quiet: nothing changes
    m.others = 1.0
    m.advance(INTERVAL)
    assert g.tick() == 1  # a neighbour again: at once
    m.others = 0.0
    m.advance(INTERVAL)
    assert g.tick() is None and g.current == 1  # one quiet sample is not enough to take it back


def test_the_governor_samples_at_most_every_interval() -> None:
    calls = []
    m = Machine()

    def meter() -> tuple[float, float]:
        calls.append(m.now)
        return m.meter()

    g = ThreadGovernor(4, meter=meter, clock=lambda: m.now)
    for _ in range(9):  # at 0, 1/4, 2/4, ... 8/4 intervals
        g.tick()
        m.advance(INTERVAL / 4)
    assert calls == [0.0, INTERVAL, 2 * INTERVAL]


def test_a_stalled_step_has_a_neighbour_that_just_appeared_seen_within_soon_seconds() -> None:
    m = Machine()
    g = ThreadGovernor(2, meter=m.meter, clock=lambda: m.now)
    g.tick()
    m.advance(INTERVAL)
    assert g.tick() is None  # quiet
    m.advance(INTERVAL * 0.8)  # quiet for most of the next window ...
    m.others = 1.0  # ... then a neighbour appears and the next step is held up
    g.stalled()
    assert g.tick() is None  # nothing measured yet
    m.advance(SOON * 1.001)
    assert g.tick() == 1  # a window from the stall on sees it at once, not diluted by quiet time
    m.advance(SOON * 1.001)
    assert g.tick() is None  # back to sampling every INTERVAL


def test_without_the_stall_the_same_neighbour_waits_for_a_whole_diluted_window() -> None:
    m = Machine()
    g = ThreadGovernor(2, meter=m.meter, clock=lambda: m.now)
    g.tick()
    m.advance(INTERVAL * 0.8)
    m.others = 1.0
    m.advance(INTERVAL * 0.2)
    assert g.tick() is None  # 0.2 of a core over the window: below BUSY


def test_a_single_thread_has_nothing_to_give_back_on_a_stall() -> None:
    calls = []
    m = Machine()

    def meter() -> tuple[float, float]:
        calls.append(m.now)
        return m.meter()

    g = ThreadGovernor(1, meter=meter, clock=lambda: m.now)
    g.stalled()
    assert calls == []


V2_ROOT = "0::/\n"
V1_ROOT = "4:cpu,cpuacct:/\n0::/\n"


def test_cpu_budget_follows_a_cgroup_quota(tmp_path: Path) -> None:
    assert cpu_quota(tmp_path, V2_ROOT) is None
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path, V2_ROOT) is None
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cpu_quota(tmp_path, V2_ROOT) == 1.5
    assert cpu_budget(tmp_path, V2_ROOT) == min(2, cpu_budget(tmp_path, ""))  # 1.5 cores round up
    (tmp_path / "cpu.max").write_text("50000 100000\n")
    assert cpu_budget(tmp_path, V2_ROOT) == 1
    v1 = tmp_path / "v1"
    (v1 / "cpu,cpuacct").mkdir(parents=True)
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("-1\n")
    (v1 / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(v1, V1_ROOT) is None
    (v1 / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("100000\n")
    assert cpu_quota(v1, V1_ROOT) == 1.0 and cpu_budget(v1, V1_ROOT) == 1


def test_the_quota_of_the_process_own_group_and_its_parents_counts(tmp_path: Path) -> None:
    """A server started inside a sub-group (systemd slice, `docker run --cpus` on a v1 host
    without a cgroup namespace, a benchmark's quota group) is limited by that group, or by a
    parent's tighter limit; the root's "no limit" does not hide them."""
    (tmp_path / "cpu.max").write_text("max 100000\n")
    inner = tmp_path / "slice" / "server"
    inner.mkdir(parents=True)
    (inner / "cpu.max").write_text("300000 100000\n")
    own = "0::/slice/server\n"
    assert cpu_quota(tmp_path, own) == 3.0
    (tmp_path / "slice" / "cpu.max").write_text("100000 100000\n")
    assert cpu_quota(tmp_path, own) == 1.0  # the parent's limit is the tighter one
    # A hybrid host: v2 at unified/, the cpu controller on v1 with its own paths.
    hybrid = tmp_path / "hybrid"
    (hybrid / "unified").mkdir(parents=True)
    (hybrid / "cpu" / "bench").mkdir(parents=True)
    (hybrid / "cpu" / "bench" / "cpu.cfs_quota_us").write_text("50000\n")
    (hybrid / "cpu" / "bench" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(hybrid, "1:cpu:/bench\n0::/\n") == 0.5
    # A container that mounts its own group as the root: the path is not visible, the root counts.
    (hybrid / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (hybrid / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(hybrid, "1:cpu:/docker/0123abcd\n") == 2.0
    assert cgroup_dirs("cpu", hybrid, "1:memory:/x\n") == []


def test_cgroup_room_takes_the_tightest_memory_limit(tmp_path: Path) -> None:
    own = "0::/app\n"
    (tmp_path / "app").mkdir()
    assert cgroup_room(tmp_path, own) is None
    (tmp_path / "app" / "memory.max").write_text("max\n")
    (tmp_path / "app" / "memory.current").write_text("100\n")
    assert cgroup_room(tmp_path, own) is None
    (tmp_path / "app" / "memory.max").write_text("1000\n")
    assert cgroup_room(tmp_path, own) == 900
    (tmp_path / "memory.max").write_text("500\n")
    (tmp_path / "memory.current").write_text("400\n")
    assert cgroup_room(tmp_path, own) == 100
