"""`slm fit`: will this model fit this machine, from the catalog before any download or
from a GGUF's header after. The arithmetic is models/memory.py's, shared with the engine's
memory budget."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.formats import format_of, projector_bytes
from slmkit.formats.onnx import kv_type as onnx_kv_type
from slmkit.hardware import Machine, cpu_repacks
from slmkit.models.memory import Estimate, estimate, estimate_shape
from slmkit.optimize.catalog import CatalogModel
from slmkit.store.gguf_info import read_info

SAFETY = 0.9  # share of the free memory a model may plan to use


@dataclass(frozen=True)
class Fit:
    model: str  # catalog id, store name or file name
    source: str  # "catalog", "gguf" (a file) or "store"
    quant: str
    estimate: Estimate
    kv_type: str
    machine: Machine
    fmt: str = "gguf"  # "gguf" (llama.cpp) or "onnx" (ONNX Runtime)

    @property
    def budget(self) -> int:
        """The memory the verdict is decided on: SAFETY x what is available for models."""
        return int(SAFETY * self.machine.memory_for_models)

    @property
    def fits_ram(self) -> bool:
        return self.estimate.required <= self.budget

    @property
    def fits_gpu(self) -> list[bool]:
        """Per GPU: whether the whole model and its KV cache could be offloaded."""
        need = self.estimate.required - self.estimate.overhead
        return [need <= SAFETY * gpu.memory_free for gpu in self.machine.gpus]

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "source": self.source,
            "quant": self.quant,
            "context": self.estimate.n_ctx,
            "parallel": self.estimate.n_parallel,
            "kv_type": self.kv_type,
            "format": self.fmt,
            "bytes": self.estimate.parts(),
            "fits_ram": self.fits_ram,
            "budget_bytes": self.budget,
            "fits_gpu": self.fits_gpu,
            "machine": self.machine.to_json(),
        }


def fit_catalog(
    model: CatalogModel,
    machine: Machine,
    *,
    quant: str | None = None,
    n_ctx: int = 4096,
    n_parallel: int = 1,
    kv_type: str = "f16",
    repack: bool | None = None,
) -> Fit:
    quant = (quant or model.default_quant()).upper()
    weights, repacked = model.weight_bytes(quant)
    repack = cpu_repacks() if repack is None else repack
    est = estimate_shape(model.shape, weights, repacked if repack else 0, n_ctx, n_parallel, kv_type=kv_type)
    return Fit(model.id, "catalog", quant, est, kv_type.lower(), machine)


def fit_catalog_onnx(
    model: CatalogModel,
    machine: Machine,
    *,
    precision: str | None = None,
    n_ctx: int = 4096,
    n_parallel: int = 1,
) -> Fit:
    """An ONNX Runtime build of a catalog model: its weights, and a KV cache in the graph's
    type (float32 on CPU; fp16 builds keep fp16), nothing repacked."""
    from slmkit.errors import InvalidRequest

    precision = (precision or next(iter(model.onnx), "")).lower()
    if precision not in model.onnx:
        known = ", ".join(model.onnx) or "none"
        raise InvalidRequest(
            f"{model.id} has no ONNX {precision or 'build'} in the catalog (ONNX builds: {known})"
        )
    kv_type = onnx_kv_type(precision)
    est = estimate_shape(
        model.shape, model.onnx_weight_bytes(precision), 0, n_ctx, n_parallel, kv_type=kv_type
    )
    return Fit(model.id, "catalog", precision, est, kv_type, machine, fmt="onnx")


def fit_stored(
    record: Any, machine: Machine, *, n_ctx: int = 4096, n_parallel: int = 1, kv_type: str = "f16"
) -> Fit:
    """A model in the store, through its format's facts and estimate (an ONNX folder keeps its
    KV cache in the graph's type: ``kv_type`` is what SLM_KV_CACHE_TYPE would say)."""
    fmt = format_of(record)
    info = fmt.facts(record)
    own = fmt.kv_type(info, kv_type.lower())
    est = fmt.estimate(info, n_ctx, n_parallel, kv_type=own, adapters=projector_bytes(record.projector))
    return Fit(record.name.display, "store", info.file_type, est, own, machine, fmt=fmt.name)


def fit_gguf(
    path: Path,
    label: str,
    machine: Machine,
    *,
    n_ctx: int = 4096,
    n_parallel: int = 1,
    kv_type: str = "f16",
    repack: bool | None = None,
) -> Fit:
    info = read_info(path)
    est = estimate(info, n_ctx, n_parallel, kv_type=kv_type, repack=repack)
    return Fit(label, "gguf", info.file_type, est, kv_type.lower(), machine)
