"""Inference backends: one module per inference library, behind the :class:`Backend` protocol.

``llama.py`` (llama.cpp through llama-cpp-python) serves GGUF models inside worker
processes; ``onnx.py`` (ONNX Runtime) serves ONNX Runtime GenAI folders the same way;
``llama_offline.py`` quantizes and scores for the CLI. They are the only modules importing
an inference library, and the API process never imports them: it talks to workers
(engine/runner.py) that do. The load spec and the shared types are in engine/types.py.
"""

from __future__ import annotations

from typing import Protocol

from slmkit.engine.scheduler import StepPlan, StepResult
from slmkit.engine.types import LoadSpec, ModelInfo, SamplingParams


class Backend(Protocol):
    """What EngineCore needs from an inference library. backends/llama.py implements it
    with llama.cpp; unit tests pass a fake."""

    info: ModelInfo  # n_ctx is per slot; n_parallel slots; n_batch tokens per step
    bos_token: str  # text of the BOS token ("" when the model has none)
    eos_token: str
    add_bos: bool  # whether the model wants BOS prepended to a prompt
    fim: tuple[int, int, int] | None  # fill-in-the-middle prefix, suffix and middle tokens, if any

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]: ...

    def token_bytes(self, token: int) -> bytes: ...

    def start(self, request_id: str, sampling: SamplingParams) -> None: ...

    def execute(self, plan: StepPlan) -> StepResult: ...

    def release(self, request_id: str) -> None: ...

    def set_threads(self, n: int) -> None: ...

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]: ...

    def close(self) -> None: ...


def open_backend(spec: LoadSpec) -> Backend:
    """The backend ``spec`` names, loaded (inside a worker process, or in-process for
    slmkit.load); raises ModelLoadError."""
    if spec.backend == "onnx":
        from slmkit.engine.backends.onnx import OnnxBackend

        return OnnxBackend(spec)
    from slmkit.engine.backends.llama import LlamaBackend

    return LlamaBackend(spec)
