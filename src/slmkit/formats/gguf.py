"""A GGUF file, served by llama.cpp."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from slmkit.errors import InvalidRequest
from slmkit.formats import COMPLETION, EMBEDDING, INSERT, RERANK, Layers, Scorer, settings_spec
from slmkit.pipe import LoadSpec

if TYPE_CHECKING:
    from slmkit.config import Config
    from slmkit.models.memory import Estimate
    from slmkit.names import ModelName
    from slmkit.store import ModelRecord, ModelStore
    from slmkit.store.gguf_info import GGUFInfo

# Where a GGUF names its fill-in-the-middle tokens (llama.cpp's vocabulary reads the same).
FIM_KEYS = ("tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id")


class GGUF:
    name = "gguf"
    backend = "llama"
    runtime = "llama.cpp"

    def facts(self, record: ModelRecord) -> GGUFInfo:
        from slmkit.store.gguf_info import read_info

        return read_info(record.model_path)

    def capabilities(self, facts: GGUFInfo) -> set[str]:
        if facts.reranker:  # a cross-encoder: it scores (query, document) pairs
            return {RERANK}
        if facts.encoder_only:  # BERT and kin: embeddings (and similarity rerank) only
            return {EMBEDDING}
        caps = {COMPLETION, EMBEDDING}
        if any(key in facts.metadata for key in FIM_KEYS):
            caps.add(INSERT)
        return caps

    def kv_type(self, facts: GGUFInfo, configured: str) -> str:
        return configured

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
        from slmkit.models.memory import estimate

        return estimate(
            facts, n_ctx, n_parallel, adapters=adapters, kv_type=kv_type, swa_full=swa_full, kv_pool=kv_pool
        )  # repacks as the CPU does

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
        spec = settings_spec(
            path, config, backend=self.backend, n_ctx=n_ctx, n_parallel=n_parallel, adapters=adapters
        )
        kind = ""
        if projector is not None:
            from slmkit.store.gguf_info import read_info

            kind = str(read_info(projector).metadata.get("clip.projector_type", ""))
        return dataclasses.replace(
            spec, rerank=facts.reranker, projector=str(projector or ""), projector_type=kind
        )

    def prepare(self, store: ModelStore, record: ModelRecord) -> Path:
        return record.model_path

    def weights_bytes(self, record: ModelRecord) -> int:
        return sum(self.facts(record).tensor_bytes.values())

    def scorer(self, path: Path, *, n_ctx: int, threads: int) -> Scorer:
        from slmkit.engine.backends.llama_offline import Scorer as LlamaScorer

        return LlamaScorer(path, n_ctx=n_ctx, threads=threads)

    def derive(
        self,
        store: ModelStore,
        name: ModelName,
        weights: str,
        base: ModelRecord | None,
        layers: Layers,
        adapters: dict[str, str] | None,
    ) -> ModelRecord:
        from slmkit.store.gguf_info import read_info
        from slmkit.store.manifest import MEDIA_ADAPTER, MEDIA_PROJECTOR

        info = read_info(store.blobs.path(weights))  # the GGUF gate
        digests = _adapters(store, adapters, info.architecture) if adapters is not None else None
        if digests is None and base is not None:
            digests = [layer.digest for layer in base.manifest.layers if layer.mediaType == MEDIA_ADAPTER]
        kept = base.manifest.layer(MEDIA_PROJECTOR) if base is not None else None  # FROM keeps it
        return store.create(
            name,
            weights,
            info,
            template=layers.template,
            system=layers.system,
            params=layers.params,
            messages=layers.messages,
            license=layers.license,
            adapters=digests,
            projector=kept.digest if kept is not None else None,
        )


def _adapters(store: ModelStore, files: dict[str, str], architecture: str) -> list[str]:
    """Uploaded LoRA adapter blobs, checked: GGUF, an adapter, for this architecture."""
    from slmkit.store import parse_digest
    from slmkit.store.gguf_info import read_info

    digests = []
    for filename, value in files.items():
        digest = parse_digest(value)
        if not store.blobs.exists(digest):
            raise InvalidRequest(f"adapters: blob {digest} has not been uploaded (POST /api/blobs/{digest})")
        info = read_info(store.blobs.path(digest))
        if info.metadata.get("general.type") != "adapter" or info.metadata.get("adapter.type") != "lora":
            raise InvalidRequest(f"adapters: {filename} is not a LoRA adapter GGUF")
        if info.architecture != architecture:
            raise InvalidRequest(
                f"adapters: {filename} is for {info.architecture}, the model is {architecture}"
            )
        digests.append(digest)
    return digests
