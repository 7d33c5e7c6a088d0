"""An ONNX Runtime GenAI folder (Foundry Local's and Olive's builds, `slm convert --to onnx`),
served by engine/backends/onnx.py. The folder's gate and its facts are store/onnx_folder.py's:
a folder is checked before its manifest is written."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from slmkit.errors import InvalidRequest
from slmkit.formats import COMPLETION, EMBEDDING, INSERT, Layers, Scorer, settings_spec
from slmkit.pipe import LoadSpec

if TYPE_CHECKING:
    from slmkit.config import Config
    from slmkit.models.memory import Estimate
    from slmkit.names import ModelName
    from slmkit.store import ModelRecord, ModelStore
    from slmkit.store.gguf_info import GGUFInfo


def kv_type(precision: str) -> str:
    """The KV cache's element type of a build: the graph keeps it in its activations' type
    (float16 for fp16/bf16 builds, float32 otherwise: the CPU builds)."""
    return "f16" if precision.lower() in ("fp16", "bf16") else "f32"


def fim(facts: GGUFInfo) -> tuple[int, int, int] | None:
    """The tokenizer's fill-in-the-middle ids (store/onnx_folder.py names them as a GGUF)."""
    ids = [facts.metadata.get(f"tokenizer.ggml.fim_{key}_token_id") for key in ("pre", "suf", "mid")]
    return (ids[0], ids[1], ids[2]) if all(isinstance(i, int) for i in ids) else None  # type: ignore[return-value]


class OnnxFolder:
    name = "onnx"
    backend = "onnx"
    runtime = "ONNX Runtime GenAI"

    def facts(self, record: ModelRecord) -> GGUFInfo:
        from slmkit.store.onnx_folder import read_folder_info

        return read_folder_info(record.files, record.config.file_type)

    def capabilities(self, facts: GGUFInfo) -> set[str]:
        caps = {COMPLETION}
        if self.embedding_output(facts):  # the graph pools its hidden states, if it outputs them
            caps.add(EMBEDDING)
        if fim(facts) is not None:
            caps.add(INSERT)
        return caps

    def embedding_output(self, facts: GGUFInfo) -> str:
        from slmkit.store.onnx_folder import HIDDEN_STATES

        return HIDDEN_STATES if facts.metadata.get("onnx.hidden_states") else ""

    def kv_type(self, facts: GGUFInfo, configured: str) -> str:
        return kv_type(facts.file_type)  # the graph's own type; SLM_KV_CACHE_TYPE does not apply

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

        return estimate(facts, n_ctx, n_parallel, adapters=adapters, kv_type=kv_type, repack=False)

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
        if projector is not None:
            raise InvalidRequest("an ONNX model takes no vision projector")
        return settings_spec(
            path,
            config,
            backend=self.backend,
            n_ctx=n_ctx,
            n_parallel=n_parallel,
            adapters=adapters,
            fim=fim(facts),
            embedding_output=self.embedding_output(facts),
        )

    def prepare(self, store: ModelStore, record: ModelRecord) -> Path:
        return store.view(record)  # the worker reads the folder's files under their own names

    def weights_bytes(self, record: ModelRecord) -> int:
        from slmkit.store.onnx_folder import weights_bytes

        return weights_bytes(record.files)

    def scorer(self, path: Path, *, n_ctx: int, threads: int) -> Scorer:
        from slmkit.engine.backends.onnx import OnnxScorer

        return OnnxScorer(path, n_ctx=n_ctx, threads=threads)

    def derive(
        self,
        store: ModelStore,
        name: ModelName,
        weights: str,
        base: ModelRecord | None,
        layers: Layers,
        adapters: dict[str, str] | None,
    ) -> ModelRecord:
        if adapters:
            raise InvalidRequest("adapters: LoRA adapters are not supported for ONNX models")
        if base is None:
            raise InvalidRequest("from: an ONNX model is made from a stored ONNX model")
        c = base.config
        return store.create_folder(  # the base's files, new small layers
            name,
            {n: layer.digest for n, layer in base.manifest.model_files.items()},
            precision=c.file_type,
            template=layers.template,
            system=layers.system,
            params=layers.params,
            messages=layers.messages,
            license=layers.license,
            source=c.source,
            revision=c.revision,
            provenance=c.provenance,
        )
