"""`create`: a new model from an uploaded GGUF blob or an existing model, plus overrides."""

from __future__ import annotations

from slmkit.engine import parameters
from slmkit.errors import InvalidRequest, ModelNotFound
from slmkit.modelfile import ROLES
from slmkit.names import ModelName
from slmkit.server.ollama.protocol import CreateRequest
from slmkit.store import ModelRecord, ModelStore, parse_digest
from slmkit.store.gguf_info import read_info
from slmkit.store.manifest import MEDIA_ADAPTER


def create(store: ModelStore, req: CreateRequest) -> ModelRecord:
    name = ModelName.parse(req.model)
    if req.quantize:
        raise InvalidRequest("quantize: quantizing at create is not supported yet")
    base: ModelRecord | None = None
    if req.files:
        ggufs = [d for f, d in req.files.items() if f.endswith(".gguf")]
        if len(ggufs) != 1 or len(req.files) != 1:
            raise InvalidRequest("files: give exactly one .gguf file")
        digest = parse_digest(ggufs[0])
        if not store.blobs.exists(digest):
            raise InvalidRequest(f"files: blob {digest} has not been uploaded (POST /api/blobs/{digest})")
        store.blobs.check(digest)
    elif req.from_:
        try:
            base = store.get(req.from_)
        except ModelNotFound as exc:
            raise ModelNotFound(req.from_) from exc
        if base.upstream is not None:
            raise InvalidRequest(f"from: {req.from_} is served by an upstream server; it has no weights")
        digest = base.manifest.model_layer.digest
    else:
        raise InvalidRequest("from or files: a model needs a base (FROM)")
    messages = req.messages if req.messages is not None else (base.messages if base else None)
    for message in messages or []:
        if message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise InvalidRequest(f"messages: each needs a role ({', '.join(ROLES)}) and a content")
    params = dict(base.params) if base else {}
    params.update(parameters.layer(req.parameters or {}, "parameters."))
    license = req.license if not isinstance(req.license, list) else "\n\n".join(req.license)
    template = req.template if req.template is not None else (base.template if base else None)
    system = req.system if req.system is not None else (base.system if base else None)
    license = license if license is not None else (base.license if base else None)
    if base is not None and base.files:  # an ONNX folder model: its files, new small layers
        if req.adapters:
            raise InvalidRequest("adapters: LoRA adapters are not supported for ONNX models")
        c = base.config
        return store.create_folder(
            name,
            {n: layer.digest for n, layer in base.manifest.model_files.items()},
            precision=c.file_type,
            template=template,
            system=system,
            params=params,
            messages=messages,
            license=license,
            source=c.source,
            revision=c.revision,
            provenance=c.provenance,
        )
    info = read_info(store.blobs.path(digest))  # the GGUF gate
    adapters = _adapters(store, req.adapters, info.architecture) if req.adapters is not None else None
    if adapters is None and base is not None:
        adapters = [layer.digest for layer in base.manifest.layers if layer.mediaType == MEDIA_ADAPTER]
    return store.create(
        name,
        digest,
        info,
        template=template,
        system=system,
        params=params,
        messages=messages,
        license=license,
        adapters=adapters,
    )


def _adapters(store: ModelStore, files: dict[str, str], architecture: str) -> list[str]:
    """Uploaded LoRA adapter blobs, checked: GGUF, an adapter, for this architecture."""
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
