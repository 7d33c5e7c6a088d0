"""The one hardware probe: what this machine offers a model. Memory (RAM, the cgroup's
limit), cores, CPU features, GPUs. ``slm fit``, ``recommend``, the server's memory budget,
the default thread count and the repacking estimate all read it from here."""

from __future__ import annotations

import functools
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

CGROUP_ROOT = Path("/sys/fs/cgroup")
# CPU flags that matter to llama.cpp's CPU kernels, in the order we report them.
FEATURES = (
    "sse3", "ssse3", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw",
    "avx512_vnni", "avx512_bf16", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "sve", "i8mm",
)  # fmt: skip


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_total: int  # bytes
    memory_free: int  # bytes


@dataclass(frozen=True)
class Machine:
    memory_total: int  # bytes of RAM
    memory_available: int  # bytes free now (psutil's "available")
    cgroup_limit: int | None  # bytes, when a container limit applies
    cores_physical: int
    cores_logical: int
    cpu_model: str
    cpu_features: tuple[str, ...]
    gpus: tuple[Gpu, ...] = field(default_factory=tuple)

    @property
    def memory_for_models(self) -> int:
        """Memory a new model may take: available RAM, capped by the container's room."""
        return min(self.memory_available, self.cgroup_limit or self.memory_available)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["memory_for_models"] = self.memory_for_models
        return data


class MachineProbe(Protocol):
    def __call__(self) -> Machine: ...


def probe() -> Machine:
    """This machine, now."""
    import psutil

    vm = psutil.virtual_memory()
    room = cgroup_room()
    model, flags = _cpu()
    return Machine(
        memory_total=int(vm.total),
        memory_available=int(vm.available),
        cgroup_limit=room,
        cores_physical=int(psutil.cpu_count(logical=False) or 1),
        cores_logical=int(psutil.cpu_count(logical=True) or 1),
        cpu_model=model,
        cpu_features=tuple(f for f in FEATURES if f in flags),
        gpus=tuple(_nvidia_gpus()),
    )


class MemoryProbe(Protocol):
    """How much memory this machine (or its cgroup) has free; tests pass a fake."""

    def available(self) -> int: ...

    def in_container(self) -> bool:
        """Whether a cgroup limit, not the machine's free memory, bounds :meth:`available`
        (a container: the OS's own memory is outside that limit)."""
        ...


class SystemMemory:
    """psutil's available memory, capped by a cgroup v2/v1 limit when there is one."""

    def available(self) -> int:
        return min(self._free(), self._room())

    def in_container(self) -> bool:
        return self._room() < self._free()

    def _free(self) -> int:
        import psutil

        return int(psutil.virtual_memory().available)

    def _room(self) -> int:
        limit = cgroup_room()
        return limit if limit is not None else 1 << 62


def cgroup_room(root: Path = CGROUP_ROOT, own: str | None = None) -> int | None:
    """Bytes the process may still use under the tightest cgroup v2/v1 memory limit of its
    group and the groups above it, when one applies."""
    room: int | None = None
    for group in cgroup_dirs("memory", root, own):
        for limit_file, usage_file in (
            ("memory.max", "memory.current"),
            ("memory.limit_in_bytes", "memory.usage_in_bytes"),
        ):
            try:
                raw = (group / limit_file).read_text().strip()
                usage = int((group / usage_file).read_text().strip())
            except (OSError, ValueError):
                continue
            if raw.isdigit() and int(raw) < 1 << 60:
                here = max(0, int(raw) - usage)
                room = here if room is None else min(room, here)
    return room


def cgroup_dirs(controller: str, root: Path = CGROUP_ROOT, own: str | None = None) -> list[Path]:
    """The directories where a ``controller`` limit on this process may be set: its own
    cgroup (from /proc/self/cgroup, or ``own``) and each group above it, up to the mount, in
    the v2 (unified) and v1 hierarchies. A container that mounts its own group as the root
    (its path not visible under the mount) gets the mount's root."""
    if own is None:
        try:
            own = Path("/proc/self/cgroup").read_text()
        except OSError:
            own = "0::/\n"
    dirs: list[Path] = []
    for line in own.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            mounts = [root / "unified", root]  # a hybrid host mounts v2 at unified/
        elif controller in controllers.split(","):
            mounts = [root / controllers, root / controller]
        else:
            continue
        mount = next((m for m in mounts if m.is_dir()), None)
        if mount is None:
            continue
        group = mount / path.strip().lstrip("/")
        group = group if path.strip() not in ("", "/") and group.is_dir() else mount
        while True:
            if group not in dirs:
                dirs.append(group)
            if group == mount:
                break
            group = group.parent
    return dirs


def physical_cores() -> int:
    import psutil

    return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def cpu_budget(root: Path = CGROUP_ROOT, own: str | None = None) -> int:
    """Cores this process may use: physical cores, capped by its CPU affinity and by a
    cgroup v2/v1 CPU quota (a Kubernetes CPU limit), rounded up. The most threads a model
    gets by default (SLM_NUM_THREADS=0; engine/threads.py)."""
    cores = physical_cores()
    if hasattr(os, "sched_getaffinity"):
        cores = min(cores, len(os.sched_getaffinity(0)) or cores)
    quota = cpu_quota(root, own)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    return max(1, cores)


def cpu_quota(root: Path = CGROUP_ROOT, own: str | None = None) -> float | None:
    """The tightest CPU limit in cores (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``) on this
    process's cgroup and the groups above it, if any."""
    limits = [q for group in cgroup_dirs("cpu", root, own) if (q := _quota_in(group)) is not None]
    return min(limits, default=None)


def _quota_in(group: Path) -> float | None:
    try:
        quota, period = [*(group / "cpu.max").read_text().split(), "", ""][:2]
    except OSError:
        try:
            quota = (group / "cpu.cfs_quota_us").read_text().strip()
            period = (group / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return None
    if not quota.lstrip("-").isdigit() or not period.isdigit() or int(quota) <= 0 or int(period) <= 0:
        return None  # "max" or -1: no limit
    return int(quota) / int(period)


@functools.cache
def cpu_extra_buffers() -> bool:
    """Whether llama.cpp may put weights in its CPU "extra" buffer types (repacked 4-bit
    layouts, Intel AMX tiles). Not on CPUs with AMX: there, llama-cpp-python 0.3.36 (built
    with GGML_NATIVE) puts weights in its AMX buffer, and the first batched prompt segfaults
    in llama_decode (measured on a Sapphire Rapids VM; one-token decodes still worked), so
    every worker died on its first real request. Without extra buffers weights stay as
    stored."""
    return not {"amx_int8", "amx_tile"} & _cpu()[1]


@functools.cache
def cpu_repacks() -> bool:
    """Whether llama.cpp's CPU backend repacks 4-bit weights here (x86 with AVX2, or ARM,
    unless extra buffer types are off: :func:`cpu_extra_buffers`)."""
    if not cpu_extra_buffers():
        return False
    if platform.machine().lower() in {"aarch64", "arm64"}:
        return True
    return "avx2" in _cpu()[1]


@functools.cache
def _cpu() -> tuple[str, frozenset[str]]:
    """The CPU's model name and flags, from /proc/cpuinfo (read once)."""
    model, flags = _read_cpuinfo()
    return model, frozenset(flags)


def _read_cpuinfo() -> tuple[str, set[str]]:
    model, flags = platform.processor() or platform.machine(), set[str]()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in {"model name", "cpu model"} and value.strip():
            model = value.strip()
        elif key in {"flags", "features"}:
            flags.update(value.split())
    return model, flags


def _nvidia_gpus() -> list[Gpu]:
    """NVIDIA GPUs through NVML (the nvidia-ml-py package), when both are present."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:  # no driver or no GPU
        return []
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else str(name)
            gpus.append(Gpu(name, int(mem.total), int(mem.free)))
    finally:
        pynvml.nvmlShutdown()
    return gpus
