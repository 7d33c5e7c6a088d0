"""Inference backends: one module per inference library, behind the :class:`Backend` protocol.

``llama.py`` (llama.cpp through llama-cpp-python) serves GGUF models inside worker
processes; ``onnx.py`` (ONNX Runtime) serves ONNX Runtime GenAI folders the same way;
``llama_offline.py`` quantizes and scores for the CLI. They are the only modules importing
an inference library, and the API process never imports them: it talks to workers
(models/runner.py) that do. The load spec and the shared types are in pipe.py.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Protocol

from slmkit.engine.plan import StepPlan, StepResult
from slmkit.pipe import Image, LoadSpec, ModelInfo, SamplingParams

if TYPE_CHECKING:
    import numpy as np


class Backend(Protocol):
    """What EngineCore needs from an inference library. backends/llama.py implements it
    with llama.cpp; unit tests pass a fake."""

    info: ModelInfo  # n_ctx is per slot; n_parallel slots; n_batch tokens per step
    bos_token: str  # text of the BOS token ("" when the model has none)
    eos_token: str
    add_bos: bool  # whether the model wants BOS prepended to a prompt
    fim: tuple[int, int, int] | None  # fill-in-the-middle prefix, suffix and middle tokens, if any
    speculative: bool  # execute() checks DecodeItem.draft tokens (else EngineCore plans none)
    adaptive_threads: bool  # set_threads() takes effect (else the worker runs no ThreadGovernor)
    shares_prefixes: bool  # execute() applies StepPlan.copies (one slot's prefix into another)

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]: ...

    def tokenize_media(
        self, request_id: str, text: str, images: tuple[Image, ...], add_bos: bool, offset: int
    ) -> list[int]:
        """Text with images: each image a run of negative placeholder ids (backends/media.py),
        held for the request until ``release``."""
        ...

    def token_bytes(self, token: int) -> bytes: ...

    def start(self, request_id: str, sampling: SamplingParams) -> None: ...

    def execute(self, plan: StepPlan) -> StepResult: ...

    def release(self, request_id: str) -> None: ...

    def set_threads(self, n: int) -> None: ...

    def embed(self, texts: list[str]) -> tuple[list[list[float]], int]: ...

    def rank(self, pairs: list[tuple[str, str]], max_doc_tokens: int = 0) -> tuple[list[float], int]:
        """A cross-encoder's relevance score per (query, document) pair, and tokens read."""
        ...

    def close(self) -> None: ...


def open_backend(spec: LoadSpec) -> Backend:
    """The backend ``spec`` names, loaded (inside a worker process, or in-process for
    slmkit.load); raises ModelLoadError."""
    if spec.backend == "onnx":
        from slmkit.engine.backends.onnx import OnnxBackend

        return OnnxBackend(spec)
    from slmkit.engine.backends.llama import LlamaBackend

    return LlamaBackend(spec)


def clean_message(exc: BaseException) -> str:
    """An inference library's error message without filesystem paths (they may name the user
    or the store), at most 300 characters."""
    text = str(exc) or type(exc).__name__
    return re.sub(r"(/[^\s:'\"]+)+", "<path>", text)[:300]


def score_row(row: np.ndarray, token: int, top: int) -> tuple[float, tuple[tuple[int, float], ...]]:
    """Log-softmax of one position's raw logits: ``token``'s value and the ``top`` likeliest,
    best first (the model's own distribution, before sampling settings)."""
    import numpy as np

    values = row.astype(np.float64)
    peak = values.max()
    logprobs = values - (peak + np.log(np.exp(values - peak).sum()))
    best: tuple[tuple[int, float], ...] = ()
    if top > 0:
        picked = np.argpartition(-logprobs, top)[:top]
        order = picked[np.argsort(-logprobs[picked], kind="stable")]
        best = tuple((int(t), float(logprobs[t])) for t in order)
    return float(logprobs[token]), best
