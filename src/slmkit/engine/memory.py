"""Will it fit? Memory estimates for a model load, and the budget they must fit in.

The estimate is weights (the GGUF file, mmapped) + KV cache (f16, every layer, every slot)
+ compute buffers (llama.cpp reserves them for the worst-case batch) + a fixed overhead for
the worker process. It is checked before a worker starts; after loading, the worker's real
RSS replaces it in the accounting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from slmkit.errors import InvalidRequest
from slmkit.store.gguf_info import GGUFInfo

MiB = 1024 * 1024
WORKER_OVERHEAD = 96 * MiB  # Python, llama.cpp runtime, tokenizer tables
HEADROOM = 1024 * MiB  # left to the OS and the API process when the budget is automatic


@dataclass(frozen=True)
class Estimate:
    weights: int  # bytes
    kv_cache: int
    compute: int
    overhead: int = WORKER_OVERHEAD

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead


def _int(meta: dict[str, object], key: str, default: int) -> int:
    value = meta.get(key, default)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def estimate(info: GGUFInfo, file_size: int, n_ctx: int, n_parallel: int, n_batch: int = 512) -> Estimate:
    """Bytes a worker needs for this model with ``n_parallel`` slots of ``n_ctx`` tokens."""
    meta, arch = info.metadata, info.architecture
    layers = _int(meta, f"{arch}.block_count", 1)
    heads = max(1, _int(meta, f"{arch}.attention.head_count", 1))
    heads_kv = _int(meta, f"{arch}.attention.head_count_kv", heads)
    width = max(1, info.embedding_length)
    key_len = _int(meta, f"{arch}.attention.key_length", width // heads)
    value_len = _int(meta, f"{arch}.attention.value_length", width // heads)
    ctx = min(n_ctx, info.context_length) if info.context_length else n_ctx
    kv = layers * heads_kv * (key_len + value_len) * 2 * ctx * n_parallel
    # Worst-case graph: activations of a full batch plus attention scores over one slot's
    # context; calibrated on SmolLM2-135M (102 MiB measured for 512 tokens, 2048 ctx).
    compute = 4 * n_batch * (width * 16 + 2 * heads * ctx + max(info.vocab_size, 1) // 8)
    return Estimate(weights=file_size, kv_cache=kv, compute=compute)


class MemoryProbe(Protocol):
    """How much memory this machine (or its cgroup) has; tests pass a fake."""

    def available(self) -> int: ...


class SystemMemory:
    """psutil's available memory, capped by a cgroup v2/v1 limit when there is one."""

    def available(self) -> int:
        import psutil

        free = int(psutil.virtual_memory().available)
        limit = self._cgroup_room()
        return min(free, limit) if limit is not None else free

    @staticmethod
    def _cgroup_room() -> int | None:
        for limit_file, usage_file in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
        ):
            try:
                raw = Path(limit_file).read_text().strip()
                usage = int(Path(usage_file).read_text().strip())
            except (OSError, ValueError):
                continue
            if raw.isdigit() and int(raw) < 1 << 60:
                return max(0, int(raw) - usage)
        return None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1e3,
    "kb": 1e3,
    "kib": 1024,
    "m": 1e6,
    "mb": 1e6,
    "mib": 1024**2,
    "g": 1e9,
    "gb": 1e9,
    "gib": 1024**3,
    "t": 1e12,
    "tb": 1e12,
    "tib": 1024**4,
}


def parse_size(text: str, *, field: str = "SLM_MAX_MEMORY") -> int:
    """``"8GiB"``, ``"512MB"``, ``"1000000"`` -> bytes."""
    match = _SIZE.match(text)
    unit = (match.group(2) or "").lower() if match else ""
    if match is None or unit not in _UNITS:
        raise InvalidRequest(f"{field}: invalid size {text!r} (use e.g. 8GiB or 512MB)")
    return int(float(match.group(1)) * _UNITS[unit])


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"
