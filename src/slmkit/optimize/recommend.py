"""`slm recommend`: the catalog's models and quants that fit this machine, best first.

Speed is estimated from the bytes a decode step reads: one token costs
``weights / bandwidth + step overhead``. Both constants default to what this project
measured on a 2-core x86_64 machine (SmolLM2-135M Q4_1 at ~100 tok/s, one stream through
`slm serve`, README "How fast") scaled by physical cores, and are recalibrated from
`slm bench` results when given. Serving N users multiplies single-stream speed by the quant
type's batching gain (quants.py): on CPUs some types gain less from batching, so for N > 1
they fall behind types that gain more.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slmkit.errors import InvalidRequest
from slmkit.hardware import Machine
from slmkit.optimize.catalog import ONNX_LIKE, RUNTIMES, Catalog, CatalogModel
from slmkit.optimize.quants import quant_info
from slmkit.optimize.sizing import Fit, fit_catalog, fit_catalog_onnx

BANDWIDTH_PER_CORE = 6e9  # bytes/s of weights one core streams through llama.cpp's kernels
BANDWIDTH_CAP = 60e9
STEP_OVERHEAD = 0.002  # seconds per decode step outside the matmuls (sampling, Python, sync)


@dataclass(frozen=True)
class Speed:
    bandwidth: float  # bytes/s
    step_overhead: float  # s
    calibrated_from: str  # "default" or the bench file

    def single(self, active_bytes: float) -> float:
        return 1.0 / (active_bytes / self.bandwidth + self.step_overhead)


def default_speed(machine: Machine) -> Speed:
    bw = min(BANDWIDTH_CAP, BANDWIDTH_PER_CORE * max(1, machine.cores_physical))
    return Speed(bw, STEP_OVERHEAD, "default")


def speed_from_bench(path: Path, weights_of: Callable[[str], int | None], machine: Machine) -> Speed:
    """Calibrate the bandwidth from `slm bench` results (results.json): for each target whose
    model ``weights_of`` can size, its single-stream decode speed at concurrency 1."""
    try:
        data = json.loads(path.read_text())
        levels = data["levels"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"--bench: {path.name} is not `slm bench` results.json ({exc})") from exc
    samples = []
    for level in levels:
        if level.get("concurrency") != 1:
            continue
        for label, res in level.get("targets", {}).items():
            size = weights_of(label)
            tok_s = (res.get("per_stream_tok_s") or {}).get("p50") or 0
            if size and tok_s and 1 / tok_s > STEP_OVERHEAD:
                samples.append(size / (1 / tok_s - STEP_OVERHEAD))
    if not samples:
        return default_speed(machine)
    return Speed(sum(samples) / len(samples), STEP_OVERHEAD, str(path))


def batch_gain(quant: str, n: int) -> float:
    """Aggregate speed of n sequences over one: log-linear from 1 at n=1 to the type's gain
    at 8, flat beyond (CPU decode is compute-bound by then)."""
    if n <= 1:
        return 1.0
    g8 = quant_info(quant).batch_gain
    return float(g8 ** (math.log(min(n, 8)) / math.log(8)))


@dataclass(frozen=True)
class Candidate:
    model: CatalogModel
    fit: Fit
    tok_s_single: float  # one stream
    tok_s_per_user: float  # each of `parallel` streams
    tok_s_total: float  # all streams together
    score: float  # quality proxy: parameters x the quant's kept quality
    gain_measured: bool
    why: str = ""  # why this runtime (both formats are considered)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model.id,
            "quant": self.fit.quant,
            "tier": self.model.tier,
            "params": self.model.params,
            "format": self.fit.fmt,
            "runtime": RUNTIMES[self.fit.fmt],
            "why": self.why,
            "pull": self.model.pull_ref(self.fit.fmt, self.fit.quant),
            "required_bytes": self.fit.estimate.required,
            "tok_s_single": round(self.tok_s_single, 1),
            "tok_s_per_user": round(self.tok_s_per_user, 1),
            "tok_s_total": round(self.tok_s_total, 1),
            "batch_gain_measured": self.gain_measured,
        }


def recommend(
    catalog: Catalog,
    machine: Machine,
    speed: Speed,
    *,
    n_ctx: int = 4096,
    parallel: int = 1,
    min_tok_s: float = 10.0,
    kv_type: str = "f16",
    formats: tuple[str, ...] = ("gguf", "onnx"),
) -> list[Candidate]:
    """Candidates that fit and give each of ``parallel`` users ``min_tok_s``, best first.
    Both formats are considered; at equal quality GGUF on llama.cpp ranks first (see WHY)."""
    if parallel < 1:
        raise InvalidRequest("--parallel must be at least 1")
    found = []
    for model in catalog.models:
        if model.task != "chat":  # rerankers and embedding models answer no chat
            continue
        for fmt, quant in model.variants():
            if fmt not in formats:
                continue
            q = quant_info(ONNX_LIKE[quant] if fmt == "onnx" else quant)
            if q.ternary != (model.arch == "bitnet"):
                continue
            if fmt == "onnx":
                fit = fit_catalog_onnx(model, machine, precision=quant, n_ctx=n_ctx, n_parallel=parallel)
            else:
                fit = fit_catalog(
                    model, machine, quant=quant, n_ctx=n_ctx, n_parallel=parallel, kv_type=kv_type
                )
            if not fit.fits_ram:
                continue
            weights = fit.estimate.weights
            active = weights * (model.active_params or model.params) / model.params
            single = speed.single(active)
            total = single * batch_gain(q.name, parallel)
            per_user = total / parallel
            if per_user < min_tok_s:
                continue
            score = model.params * q.quality
            found.append(Candidate(model, fit, single, per_user, total, score, q.gain_measured, WHY[fmt]))
    found.sort(key=lambda c: (-c.score, c.fit.fmt != "gguf", -c.tok_s_total))
    return found


WHY = {
    "gguf": "llama.cpp: every feature (LoRA, speculative decoding, embeddings), KV cache f16 or smaller",
    "onnx": "ONNX Runtime: the Foundry Local / Olive build; no LoRA or speculative decoding, KV cache f32",
}
