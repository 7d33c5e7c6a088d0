"""Manifests: one Docker v2 style JSON document per model name, listing its layers.

Like Ollama, a model is a config blob plus layers with media types; the weights, the
chat template, the system prompt and the default parameters are separate layers so that
``slm show`` can read each one and ``slm cp`` copies nothing but a manifest.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

from slmkit.errors import InvalidDigest
from slmkit.store.blobs import parse_digest

MANIFEST_MEDIA_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
CONFIG_MEDIA_TYPE = "application/vnd.docker.container.image.v1+json"
MEDIA_MODEL = "application/vnd.ollama.image.model"
MEDIA_TEMPLATE = "application/vnd.ollama.image.template"
MEDIA_SYSTEM = "application/vnd.ollama.image.system"
MEDIA_PARAMS = "application/vnd.ollama.image.params"
MEDIA_LICENSE = "application/vnd.ollama.image.license"
MEDIA_MESSAGES = "application/vnd.ollama.image.messages"
MEDIA_ADAPTER = "application/vnd.ollama.image.adapter"
MEDIA_PROJECTOR = "application/vnd.ollama.image.projector"  # a vision model's projector (mmproj) GGUF
MEDIA_UPSTREAM = "application/vnd.slmkit.upstream"  # JSON {url, model}: served by a remote server
# One file of a multi-file model (an ONNX Runtime GenAI folder): its name is the layer's
# TITLE annotation, as OCI artifacts name files.
MEDIA_MODEL_FILE = "application/vnd.slmkit.model.file"
TITLE = "org.opencontainers.image.title"


class Layer(BaseModel):
    """One blob referenced by a manifest."""

    mediaType: str  # what the blob holds (MEDIA_* above)
    digest: str  # sha256:<hex>, validated by the store's one validator
    size: int = Field(ge=0)  # bytes
    annotations: dict[str, str] | None = None  # MEDIA_MODEL_FILE: {TITLE: file name}

    @field_validator("digest")
    @classmethod
    def _digest(cls, value: str) -> str:
        try:
            return parse_digest(value)
        except InvalidDigest as exc:  # pydantic reports ValueErrors as validation errors
            raise ValueError(str(exc)) from exc


class ModelConfig(BaseModel):
    """The config blob: facts about the weights, read from the GGUF at import."""

    model_format: str = "gguf"
    model_family: str = ""  # general.architecture, e.g. "llama", "gemma3"
    model_families: list[str] = Field(default_factory=list)
    model_type: str = ""  # parameter size, e.g. "135M"
    file_type: str = ""  # quantization, e.g. "Q4_1"
    context_length: int = 0  # tokens the model was trained for
    embedding_length: int = 0  # model width
    parameter_count: int = 0
    source: str = ""  # where the weights came from (a Hub URL), when pulled
    revision: str = ""  # the source's commit
    provenance: dict[str, Any] = Field(default_factory=dict)  # how it was made (quantize, convert)


class Manifest(BaseModel):
    schemaVersion: int = 2
    mediaType: str = MANIFEST_MEDIA_TYPE
    config: Layer
    layers: list[Layer]

    def layer(self, media_type: str) -> Layer | None:
        return next((layer for layer in self.layers if layer.mediaType == media_type), None)

    @property
    def model_files(self) -> dict[str, Layer]:
        """A multi-file model's files by name (empty for a one-file GGUF model)."""
        return {
            (layer.annotations or {}).get(TITLE, ""): layer
            for layer in self.layers
            if layer.mediaType == MEDIA_MODEL_FILE
        }

    @property
    def model_layer(self) -> Layer:
        """The weights: the GGUF, or a multi-file model's first file (its identity for
        digests; every file is checked before a load)."""
        layer = self.layer(MEDIA_MODEL) or self.layer(MEDIA_MODEL_FILE)
        if layer is None:
            from slmkit.errors import StoreError

            raise StoreError("manifest has no model layer")
        return layer

    @property
    def digests(self) -> list[str]:
        return [self.config.digest, *(layer.digest for layer in self.layers)]

    @property
    def total_size(self) -> int:
        return self.config.size + sum(layer.size for layer in self.layers)
