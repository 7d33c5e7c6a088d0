"""The model store: content-addressed blobs, manifests, imports."""

from slmkit.store.blobs import BlobStore, parse_digest
from slmkit.store.store import ModelRecord, ModelStore

__all__ = ["BlobStore", "ModelRecord", "ModelStore", "parse_digest"]
