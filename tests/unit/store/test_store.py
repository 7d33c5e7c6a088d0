from __future__ import annotations

import json
from pathlib import Path

import pytest

from slmkit.errors import InvalidModelFile, InvalidName, InvalidRequest, ModelNotFound
from slmkit.store import ModelStore
from slmkit.store.manifest import MEDIA_MODEL, MEDIA_PARAMS, MEDIA_SYSTEM, MEDIA_TEMPLATE
from tests.ggufs import TEMPLATE, write_tiny_gguf


@pytest.fixture
def gguf(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def test_import_writes_layers(store: ModelStore, gguf: Path) -> None:
    record = store.import_gguf("tiny:1", gguf, system="Be brief.", params={"temperature": 0.1})
    kinds = [layer.mediaType for layer in record.manifest.layers]
    assert kinds == [MEDIA_MODEL, MEDIA_TEMPLATE, MEDIA_SYSTEM, MEDIA_PARAMS]
    assert record.template == TEMPLATE
    assert record.system == "Be brief."
    assert record.params == {"temperature": 0.1}
    assert record.config.model_family == "llama"
    assert record.config.context_length == 128
    assert record.model_path.read_bytes() == gguf.read_bytes()
    manifest_file = store.manifests / "registry.ollama.ai" / "library" / "tiny" / "1"
    assert json.loads(manifest_file.read_text())["schemaVersion"] == 2


def test_list_copy_delete_prune(store: ModelStore, gguf: Path) -> None:
    store.import_gguf("a", gguf)
    store.copy("a", "user/b:x")
    assert sorted(r.name.display for r in store.list()) == ["a:latest", "user/b:x"]
    store.delete("a")
    assert store.blobs.digests(), "blobs still used by the copy must stay"
    store.delete("user/b:x")
    assert store.list() == []
    assert store.blobs.digests() == []


def test_an_unknown_name_close_to_a_stored_one_gets_did_you_mean(store: ModelStore, gguf: Path) -> None:
    store.import_gguf("smollm2:135m", gguf)
    with pytest.raises(ModelNotFound, match=r"model 'smollm:135m' not found; did you mean smollm2:135m\?"):
        store.get("smollm:135m")
    with pytest.raises(ModelNotFound, match="try pulling it first"):
        store.get("llama3:8b")  # nothing close: the usual advice


def test_unknown_model(store: ModelStore) -> None:
    with pytest.raises(ModelNotFound, match="nope"):
        store.get("nope")
    with pytest.raises(ModelNotFound):
        store.delete("nope")
    with pytest.raises(ModelNotFound):
        store.copy("nope", "other")


@pytest.mark.parametrize(
    "content",
    [b"", b"GG", b"NOTAGGUF" * 10, b"GGUF", b"GGUF\x03\x00\x00\x00" + b"\xff" * 16],
)
def test_malformed_files_never_enter_the_store(store: ModelStore, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(content)
    with pytest.raises(InvalidModelFile):
        store.import_gguf("bad", path)
    assert store.list() == []
    assert store.blobs.digests() == []


def test_truncated_gguf_is_refused(store: ModelStore, gguf: Path, tmp_path: Path) -> None:
    data = gguf.read_bytes()
    for cut in range(4, len(data) - 1, max(1, len(data) // 40)):
        path = tmp_path / f"cut{cut}.gguf"
        path.write_bytes(data[:cut])
        with pytest.raises(InvalidModelFile):
            store.import_gguf("cut", path)
    assert store.list() == []


def test_import_refuses_non_regular_files(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest):
        store.import_gguf("x", tmp_path)
    with pytest.raises(InvalidRequest):
        store.import_gguf("x", tmp_path / "missing.gguf")


def test_bad_name_refused_before_any_write(store: ModelStore, gguf: Path) -> None:
    with pytest.raises(InvalidName):
        store.import_gguf("../evil", gguf)
    assert not store.root.exists() or store.blobs.digests() == []


def test_list_skips_damaged_manifests(store: ModelStore, gguf: Path) -> None:
    store.import_gguf("good", gguf)
    bad = store.manifests / "registry.ollama.ai" / "library" / "bad" / "latest"
    bad.parent.mkdir(parents=True)
    bad.write_text("{not json")
    assert [r.name.display for r in store.list()] == ["good:latest"]


def test_interrupted_manifest_write_keeps_old_version(
    store: ModelStore, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.import_gguf("m", gguf, system="old")
    import os

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(Exception, match="No space left"):
        store.import_gguf("m", gguf, system="new")
    monkeypatch.undo()
    assert store.get("m").system == "old"
    leftovers = [p for p in store.manifests.rglob(".partial-*")]
    assert leftovers == []


def test_verify_finds_a_flipped_byte_and_reimport_repairs(store: ModelStore, gguf: Path) -> None:
    record = store.import_gguf("m", gguf)
    assert all(problem is None for _, problem in store.verify("m"))
    path = record.model_path
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    problems = [p for _, p in store.verify("m") if p]
    assert len(problems) == 1 and "corrupt" in problems[0]
    store.import_gguf("m", gguf)  # the same bytes again replace the corrupt copy
    assert all(problem is None for _, problem in store.verify("m"))


def test_check_rehashes_only_changed_blobs(store: ModelStore, gguf: Path) -> None:
    from slmkit.errors import IntegrityError

    record = store.import_gguf("m", gguf)
    digest = record.manifest.model_layer.digest
    store.blobs.check(digest)  # fresh from the write: no re-hash needed, no error
    path = record.model_path
    path.chmod(0o644)
    path.write_bytes(b"X" + path.read_bytes()[1:])
    with pytest.raises(IntegrityError, match="corrupt"):
        store.blobs.check(digest)
