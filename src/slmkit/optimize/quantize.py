"""`slm quantize`: a stored model, quantized by llama.cpp into a new stored model, measured
against its source, and refused when it loses more than the quality budget.

The result is stored as ``name:tag-<type>`` with its provenance (source digest and type,
target type, imatrix digest, llama.cpp version, measured quality) in its config blob. The
work happens in a temporary folder inside the store; nothing is stored unless it passes.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.errors import InvalidRequest, QualityGateFailed
from slmkit.names import ModelName
from slmkit.optimize.quants import QUANTIZE_TARGETS, QUANTS, file_type_id, quant_info
from slmkit.store import ModelRecord, ModelStore
from slmkit.store.gguf_info import GGUFInfo, read_info

FULL_PRECISION = {"F32", "ALL_F32", "F16", "BF16"}


def bits_per_weight(info: GGUFInfo) -> float:
    """Measured: tensor bytes x 8 / parameters (mixes keep some tensors at higher precision)."""
    return 8 * sum(info.tensor_bytes.values()) / max(info.parameter_count, 1)


def check_target(info: GGUFInfo, target: str, *, allow_requantize: bool) -> None:
    """Refuse targets that cannot improve on (or only degrade) the source."""
    if target not in QUANTIZE_TARGETS:
        raise InvalidRequest(f"--to: {target!r} is not a supported type ({', '.join(QUANTIZE_TARGETS)})")
    if quant_info(target).ternary and info.architecture != "bitnet":
        raise InvalidRequest(
            f"--to {target}: ternary types keep only -1/0/+1 weights; only models trained that "
            f"way (BitNet b1.58) survive it, not a {info.architecture} model"
        )
    source = info.file_type.upper()
    if source in FULL_PRECISION:
        return
    src_bits = QUANTS[source].bpw if source in QUANTS else bits_per_weight(info)
    want = quant_info(target).bpw
    if source == target or src_bits <= want:
        raise InvalidRequest(
            f"--to {target}: the source is already {source} (~{src_bits:.2f} bits/weight), lower or "
            f"equal precision than {target} (~{want:.2f}); quantizing up cannot restore what was "
            "lost. Start from an F16/BF16 model (see `slm convert`)"
        )
    if not allow_requantize:
        raise InvalidRequest(
            f"--to {target}: the source is already quantized ({source}); quantizing it again "
            "compounds the error. Start from an F16/BF16 model, or pass --allow-requantize"
        )


def load_imatrix(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """An importance matrix from llama-imatrix: its GGUF format (``<tensor>.in_sum2`` and
    ``<tensor>.counts``) or the legacy .dat format. Returns per-tensor mean squared
    activations and the file's sha256."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidRequest(f"--imatrix: cannot read {path.name}: {exc.strerror}") from exc
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    if raw[:4] == b"GGUF":
        return _imatrix_gguf(path), digest
    return _imatrix_dat(raw), digest


def _imatrix_gguf(path: Path) -> dict[str, np.ndarray]:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as exc:
        raise InvalidRequest(f"--imatrix: not a readable imatrix GGUF ({exc})") from exc
    tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in reader.tensors}
    out = {}
    for name, sums in tensors.items():
        if not name.endswith(".in_sum2"):
            continue
        base = name.removesuffix(".in_sum2")
        counts = tensors.get(base + ".counts")
        if counts is None or counts.size == 0:
            raise InvalidRequest(f"--imatrix: {base} has sums but no counts")
        rows = sums.reshape(counts.size, -1)
        out[base] = (rows / np.maximum(counts.reshape(-1, 1), 1)).reshape(-1).astype(np.float32)
    if not out:
        raise InvalidRequest("--imatrix: the file has no <tensor>.in_sum2 entries")
    return out


def _imatrix_dat(raw: bytes) -> dict[str, np.ndarray]:
    import struct

    def take(fmt: str, at: int) -> tuple[Any, int]:
        size = struct.calcsize(fmt)
        if at + size > len(raw):
            raise InvalidRequest("--imatrix: the file is truncated or not an imatrix")
        return struct.unpack_from(fmt, raw, at)[0], at + size

    count, at = take("<i", 0)
    if not 0 < count < 1_000_000:
        raise InvalidRequest("--imatrix: not an imatrix file (bad entry count)")
    out = {}
    for _ in range(count):
        length, at = take("<i", at)
        if not 0 < length < 4096 or at + length > len(raw):
            raise InvalidRequest("--imatrix: not an imatrix file (bad tensor name)")
        name, at = raw[at : at + length].decode("utf-8", "replace"), at + length
        calls, at = take("<i", at)
        n, at = take("<i", at)
        if not 0 < n < 1 << 28 or at + 4 * n > len(raw):
            raise InvalidRequest("--imatrix: the file is truncated or not an imatrix")
        values = np.frombuffer(raw, dtype="<f4", count=n, offset=at).astype(np.float32)
        at += 4 * n
        out[name] = values / calls if calls > 0 else values
    return out


def target_name(source: ModelName, quant: str) -> ModelName:
    return ModelName.parse(f"{source.display.rsplit(':', 1)[0]}:{source.tag}-{quant.lower()}")


@dataclass
class Quantized:
    """A quantization done in a scratch folder, not yet stored."""

    path: Path
    quant: str
    info: GGUFInfo
    provenance: dict[str, Any]


def quantize_record(
    record: ModelRecord,
    target: str,
    scratch: Path,
    *,
    threads: int = 0,
    allow_requantize: bool = False,
    imatrix: Path | None = None,
) -> Quantized:
    from slmkit.engine.backends.llama_offline import llama_cpp_version, quantize

    target = target.upper()
    info = read_info(record.model_path)
    check_target(info, target, allow_requantize=allow_requantize)
    matrix, matrix_digest = load_imatrix(imatrix) if imatrix else (None, "")
    out = scratch / f"{target.lower()}.gguf"
    fallbacks = quantize(
        record.model_path,
        out,
        file_type_id(target),
        threads=threads,
        allow_requantize=allow_requantize,
        imatrix=matrix,
    )
    made = read_info(out)  # the same gate every file passes before the store
    provenance = {
        "quantized_from": record.manifest.model_layer.digest,
        "source_model": record.name.display,
        "source_type": info.file_type,
        "type": target,
        "imatrix": matrix_digest,
        "fallback_tensors": fallbacks,  # tensors whose rows did not fit the type's blocks
        "tool": llama_cpp_version(),
    }
    return Quantized(out, target, made, provenance)


def store_quantized(store: ModelStore, record: ModelRecord, made: Quantized, name: ModelName) -> ModelRecord:
    digest = store.blobs.write_file(made.path)
    return store.create(
        name,
        digest,
        made.info,
        template=record.template,
        system=record.system,
        params=record.params or None,
        messages=record.messages or None,
        license=record.license,
        provenance=made.provenance,
    )


def gate(ppl_ratio: float, budget: float | None, quant: str) -> None:
    if budget is not None and ppl_ratio - 1 > budget:
        raise QualityGateFailed(
            f"{quant}: perplexity rose {ppl_ratio - 1:+.1%} over the source, beyond the budget "
            f"of {budget:.1%} (--max-ppl-increase); nothing was stored"
        )


def parse_budget(text: str) -> float:
    """``"5%"`` or ``"0.05"`` -> 0.05."""
    try:
        value = float(text.removesuffix("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise InvalidRequest(f"--max-ppl-increase: {text!r} is not a number or percentage") from None
    if not 0 <= value < 10:
        raise InvalidRequest("--max-ppl-increase: must be between 0% and 1000%")
    return value


def scratch_dir(store: ModelStore) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder on the store's filesystem, removed when done (or on failure)."""
    store.root.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=".quantize-", dir=store.root)
