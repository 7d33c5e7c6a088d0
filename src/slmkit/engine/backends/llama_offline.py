"""llama.cpp for offline tools: quantization and scoring (`slm quantize`, `slm eval`).

With engine/backends/llama.py, the only modules importing ``llama_cpp``. Serving never comes here:
this runs in the CLI's own process, one model at a time, reading logits of every position
(which the serving backend never asks for).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from slmkit.engine.backends.llama_open import open_context, open_model
from slmkit.errors import EngineError, InvalidRequest
from slmkit.hardware import cpu_budget


def llama_cpp_version() -> str:
    import llama_cpp

    return f"llama-cpp-python {llama_cpp.__version__}"


def quantize(
    source: Path,
    target: Path,
    file_type: int,
    *,
    threads: int = 0,
    allow_requantize: bool = False,
    imatrix: dict[str, np.ndarray] | None = None,
) -> int:
    """Write ``source`` quantized to llama.cpp file type ``file_type`` at ``target``; return
    how many tensors llama.cpp had to give another type (rows not a multiple of the type's block)."""
    import llama_cpp
    from llama_cpp import _logger

    _logger.set_verbose(False)  # llama.cpp logs every tensor otherwise
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads or cpu_budget()
    params.ftype = file_type
    params.allow_requantize = allow_requantize
    keep: list[Any] = []  # the imatrix arrays must outlive the call
    if imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(sorted(imatrix.items())):
            data = np.ascontiguousarray(values, dtype=np.float32)
            keep.append(data)
            entries[i].name = name.encode()
            entries[i].data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[i].size = data.size
        keep.append(entries)
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    with _native_stderr() as log:
        code = llama_cpp.llama_model_quantize(
            str(source).encode(), str(target).encode(), ctypes.byref(params)
        )
    if code != 0:
        raise EngineError(f"llama.cpp could not quantize the model (code {code})")
    return sum(1 for line in log if "falling back" in line)


@contextlib.contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Send what native code writes to stderr (llama.cpp's per-tensor quantization notes)
    to a temporary file; its lines fill the yielded list when the block ends."""
    lines: list[str] = []
    with tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


@dataclass(frozen=True)
class Chunk:
    """Logits of one evaluated window: row j predicts token j+1 of the window."""

    tokens: list[int]
    logits: np.ndarray  # float32 [len(tokens), n_vocab]


class Scorer:
    """One model with a single sequence whose every position returns logits."""

    def __init__(self, path: Path, *, n_ctx: int = 512, threads: int = 0) -> None:
        import llama_cpp
        from llama_cpp import _internals, _logger

        _logger.set_verbose(False)
        self._lib = llama_cpp
        self.n_ctx = n_ctx
        self.model = open_model(str(path))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = params.n_batch = params.n_ubatch = n_ctx
        params.n_seq_max = 1
        params.n_threads = params.n_threads_batch = threads or cpu_budget()
        self.ctx = open_context(self.model, params)
        self.batch = _internals.LlamaBatch(n_tokens=n_ctx, embd=0, n_seq_max=1, verbose=False)
        self.n_vocab = int(self.model.n_vocab())
        self.add_bos = bool(self.model.add_bos_token())
        self.bos = int(self.model.token_bos())

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        bos = self.add_bos if add_bos is None else add_bos
        return list(self.model.tokenize(text.encode("utf-8"), bos, False))

    def logits(self, tokens: Sequence[int]) -> np.ndarray:
        """Logits at every position of ``tokens``, evaluated from an empty cache."""
        if not 0 < len(tokens) <= self.n_ctx:
            raise InvalidRequest(f"a window must be 1 to {self.n_ctx} tokens, not {len(tokens)}")
        lib, b = self._lib, self.batch.batch
        lib.llama_memory_clear(self.ctx.memory, True)
        for i, token in enumerate(tokens):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = token, i, 1, True
            b.seq_id[i][0] = 0
        b.n_tokens = len(tokens)
        code = lib.llama_decode(self.ctx.ctx, b)
        if code != 0:
            raise EngineError(f"llama.cpp failed to decode {len(tokens)} tokens (code {code})")
        pointer = lib.llama_get_logits(self.ctx.ctx)
        return np.ctypeslib.as_array(pointer, shape=(len(tokens), self.n_vocab)).copy()

    def decode_speed(self, n_tokens: int = 64) -> float:
        """Greedy single-stream decode speed in tokens/s (end-of-generation ignored)."""
        lib, b = self._lib, self.batch.batch
        lib.llama_memory_clear(self.ctx.memory, True)
        token = self.bos if self.bos >= 0 else 0
        started = time.perf_counter()
        for pos in range(min(n_tokens, self.n_ctx)):
            b.token[0], b.pos[0], b.n_seq_id[0], b.logits[0] = token, pos, 1, True
            b.seq_id[0][0] = 0
            b.n_tokens = 1
            if lib.llama_decode(self.ctx.ctx, b) != 0:
                raise EngineError("llama.cpp failed to decode a token")
            row = np.ctypeslib.as_array(lib.llama_get_logits(self.ctx.ctx), shape=(self.n_vocab,))
            token = int(row.argmax())
        return min(n_tokens, self.n_ctx) / (time.perf_counter() - started)

    def close(self) -> None:
        for name in ("batch", "ctx"):
            if hasattr(self, name):
                getattr(self, name).close()
        self.model.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
