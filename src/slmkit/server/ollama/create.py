"""`create`: a new model from an uploaded GGUF blob or an existing model, plus overrides."""

from __future__ import annotations

from slmkit.answer import parameters
from slmkit.errors import InvalidRequest, ModelNotFound
from slmkit.formats import Layers, format_named, format_of
from slmkit.modelfile import ROLES
from slmkit.names import ModelName
from slmkit.server.ollama.protocol import CreateRequest
from slmkit.store import ModelRecord, ModelStore, parse_digest


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
    fmt = format_of(base) if base is not None else format_named("gguf")  # files: one .gguf
    layers = Layers(template, system, params, messages, license)
    return fmt.derive(store, name, digest, base, layers, req.adapters)
