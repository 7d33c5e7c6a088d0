"""Model formats: everything that depends on how a model is stored, behind one seam.

A stored model is a GGUF file (llama.cpp) or an ONNX Runtime GenAI folder. Each is one
:class:`ModelFormat`: the facts read from its files, what those weights can do, the load
spec for the server's settings, the memory estimate, the weights' size and a scorer for
`slm eval`. Code outside this package asks ``format_of(record)`` and never tests
``model_format`` or ``record.files`` itself (tests/unit/test_boundaries.py). A new format (a
GGUF with a vision projector, a cross-encoder) is one new implementation here, plus its
backend in engine/backends/.

Facts are a :class:`~slmkit.store.gguf_info.GGUFInfo` for every format: metadata keys named
as a GGUF names them, so the estimator, `slm show` and profiles read one shape.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from slmkit.pipe import LoadSpec

if TYPE_CHECKING:
    from slmkit.config import Config
    from slmkit.models.memory import Estimate
    from slmkit.names import ModelName
    from slmkit.store import ModelRecord, ModelStore
    from slmkit.store.gguf_info import GGUFInfo

# What a model can do (`/api/show` capabilities). The format decides the first four from
# the weights; the chat template adds tools and thinking (answer/profile.py).
COMPLETION, EMBEDDING, INSERT, RERANK = "completion", "embedding", "insert", "rerank"
TOOLS, THINKING, VISION = "tools", "thinking", "vision"


PROJECTOR_OVERHEAD = 16 * 1024 * 1024  # libmtmd's context and graph: 14 MiB measured on a tiny one


def projector_bytes(path: Path | None) -> int:
    """What a vision projector adds to a worker's memory: its weights, half as much again for
    the image encoder's compute buffers, and libmtmd's own context (an estimate: llama.cpp
    sizes the buffers per model and image size)."""
    if path is None:
        return 0
    size = path.stat().st_size
    return size + size // 2 + PROJECTOR_OVERHEAD


class Scorer(Protocol):
    """Logits at every position of a window (optimize/evaluate.py's LogitSource)."""

    n_ctx: int

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]: ...
    def logits(self, tokens: list[int] | tuple[int, ...]) -> Any: ...
    def decode_speed(self, n_tokens: int = 64) -> float: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class Layers:
    """What a created model sets over its base (`/api/create`, `slm create`)."""

    template: str | None
    system: str | None
    params: dict[str, Any]
    messages: list[dict[str, str]] | None
    license: str | None


class ModelFormat(Protocol):
    name: str  # the manifest's model_format ("gguf", "onnx")
    backend: str  # the engine backend a worker opens for it (LoadSpec.backend)
    runtime: str  # the inference library, for people (`/tokenizer_info`, listings)

    def facts(self, record: ModelRecord) -> GGUFInfo:
        """Read the stored model's facts (blocking: off the event loop)."""
        ...

    def capabilities(self, facts: GGUFInfo) -> set[str]:
        """What the weights can do: COMPLETION, EMBEDDING, INSERT."""
        ...

    def kv_type(self, facts: GGUFInfo, configured: str) -> str:
        """The KV cache's element type given SLM_KV_CACHE_TYPE."""
        ...

    def estimate(
        self,
        facts: GGUFInfo,
        n_ctx: int,
        n_parallel: int,
        *,
        kv_type: str,
        adapters: int = 0,
        swa_full: bool = False,
        kv_pool: int = 0,
    ) -> Estimate:
        """Resident memory of a load (models/memory.py's arithmetic)."""
        ...

    def load_spec(
        self,
        path: Path,
        facts: GGUFInfo,
        config: Config,
        *,
        n_ctx: int,
        n_parallel: int,
        adapters: Iterable[Path],
        projector: Path | None = None,
    ) -> LoadSpec:
        """What a worker loads, under the server's settings (and a vision model's projector)."""
        ...

    def prepare(self, store: ModelStore, record: ModelRecord) -> Path:
        """Make the weights loadable (a folder's view) and return their path."""
        ...

    def weights_bytes(self, record: ModelRecord) -> int:
        """Bytes of weights (not tokenizer or config files)."""
        ...

    def scorer(self, path: Path, *, n_ctx: int, threads: int) -> Scorer:
        """Logits for `slm eval` and `slm quantize` (loads the inference library in-process)."""
        ...

    def derive(
        self,
        store: ModelStore,
        name: ModelName,
        weights: str,
        base: ModelRecord | None,
        layers: Layers,
        adapters: dict[str, str] | None,
    ) -> ModelRecord:
        """A new model over stored weights (``weights``: the weights blob's digest; ``base``:
        the model it is made from, if any), with ``layers`` and LoRA ``adapters`` (uploaded
        blobs by file name; None: the base's)."""
        ...


def settings_spec(
    path: Path,
    config: Config,
    *,
    backend: str,
    n_ctx: int,
    n_parallel: int,
    adapters: Iterable[Path],
    **extra: Any,
) -> LoadSpec:
    """The one place SLM_* load settings become a LoadSpec: the server, `slmkit.load` and
    batch jobs all load through a format's ``load_spec``, which calls this."""
    return LoadSpec(
        model_path=str(path),
        n_ctx=n_ctx,
        n_parallel=n_parallel,
        n_threads=config.num_threads,
        adapters=tuple(str(p) for p in adapters),
        flash_attention=config.flash_attention,
        kv_cache_type=config.kv_cache_type,
        draft_tokens=config.draft_tokens,
        kv_unified=config.kv_unified,
        kv_pool=config.kv_pool,
        swa_full=config.swa_full,
        backend=backend,
        **extra,
    )


@functools.cache
def formats() -> dict[str, ModelFormat]:
    """Every format by its manifest name (made once: formats hold no state)."""
    from slmkit.formats.gguf import GGUF
    from slmkit.formats.onnx import OnnxFolder

    return {"gguf": GGUF(), "onnx": OnnxFolder()}


def format_named(name: str) -> ModelFormat:
    known = formats()
    if name not in known:
        from slmkit.errors import InvalidRequest

        raise InvalidRequest(f"unknown model format {name!r} (known: {', '.join(known)})")
    return known[name]


def format_of(record: ModelRecord) -> ModelFormat:
    """The format a stored model is in (its manifest's config says)."""
    return format_named(record.config.model_format or "gguf")
