"""Pulls from a fake Ollama registry over real HTTP on 127.0.0.1, including every attack."""

from __future__ import annotations

import errno
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from slmkit.errors import IntegrityError, InvalidRequest, PullError, StoreError
from slmkit.names import ModelName
from slmkit.store import ModelStore
from slmkit.store import registry as registry_module
from slmkit.store.registry import Progress, RegistryClient
from tests.fakes.registry import FakeRegistry, digest
from tests.ggufs import write_tiny_gguf

HEX = "a" * 64


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = write_tiny_gguf(tmp_path_factory.mktemp("g") / "tiny.gguf")
    return path.read_bytes() + b"\0" * 200_000  # big enough to be cut mid-file


@pytest.fixture
def reg(gguf: bytes) -> Iterator[FakeRegistry]:
    r = FakeRegistry(require_auth=True)
    r.add_model(
        "library/tiny:1",
        gguf,
        [
            ("application/vnd.ollama.image.system", b"Be brief."),
            ("application/vnd.ollama.image.params", b'{"temperature": 0.2}'),
        ],
    )
    r.start()
    yield r
    r.stop()


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store" / "models")


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    d = tmp_path / "canary"
    d.mkdir()
    (d / "keep").write_text("untouched")
    return d


def pull(store: ModelStore, reg: FakeRegistry, name: str = "library/tiny:1", **kw: object) -> object:
    with RegistryClient(store, private=True, **kw) as client:  # type: ignore[arg-type]
        return client.pull(ModelName.parse(f"{reg.host}/{name}"), insecure=True)


def assert_nothing_outside(store: ModelStore, canary: Path) -> None:
    assert sorted(p.name for p in canary.iterdir()) == ["keep"]
    assert (canary / "keep").read_text() == "untouched"
    outside = [p for p in store.root.parent.rglob("*") if store.root not in p.parents and p != store.root]
    assert outside == []


def test_full_pull_with_token_auth(store: ModelStore, reg: FakeRegistry) -> None:
    events: list[Progress] = []
    with RegistryClient(store, private=True) as client:
        record = client.pull(
            ModelName.parse(f"{reg.host}/library/tiny:1"), insecure=True, progress=events.append
        )
    assert record.system == "Be brief." and record.params == {"temperature": 0.2}
    assert events[0].status == "pulling manifest" and events[-1].status == "success"
    model_events = [e for e in events if e.digest == record.manifest.model_layer.digest]
    assert model_events[-1].completed == model_events[-1].total == record.manifest.model_layer.size
    tokens = [h.get("authorization") for path, h in reg.requests if "/blobs/" in path]
    assert tokens and all(t == "Bearer registry-token-123" for t in tokens)
    assert not list(store.blobs.dir.glob("*-partial"))


def test_interrupted_download_resumes_with_range(store: ModelStore, reg: FakeRegistry, gguf: bytes) -> None:
    model = digest(gguf)
    reg.cut_after[model] = 50_000
    with pytest.raises((PullError, IntegrityError), match=r"broke off|pull again"):
        pull(store, reg)
    assert store.list() == []
    partial = store.blobs.path(model).with_name(store.blobs.path(model).name + "-partial")
    assert partial.exists() and 0 < partial.stat().st_size <= 50_000
    kept = partial.stat().st_size
    record = pull(store, reg)
    ranges = [h.get("range") for path, h in reg.requests if path.endswith(model)]
    assert ranges[-1] == f"bytes={kept}-"
    assert store.blobs.path(model).read_bytes() == gguf and not partial.exists()
    assert record is not None


def test_right_size_wrong_bytes_is_refused(store: ModelStore, reg: FakeRegistry, gguf: bytes) -> None:
    reg.corrupt.add(digest(gguf))
    with pytest.raises(IntegrityError, match="digest mismatch"):
        pull(store, reg)
    assert store.list() == [] and not store.blobs.exists(digest(gguf))
    reg.corrupt.clear()
    pull(store, reg)
    assert [r.name.model for r in store.list()] == ["tiny"]


@pytest.mark.parametrize(
    "bad",
    [
        "sha256:../../canary/evil",
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX}a",
        f"sha512:{HEX}",
        f"SHA256:{HEX}",
        "",
        f"sha256:{HEX}%2f..",
        f"sha256:{HEX[:-2]}/.",
        "sha256:" + "A" * 64,
    ],
)
def test_malicious_digests_are_refused(store: ModelStore, reg: FakeRegistry, canary: Path, bad: str) -> None:
    manifest = json.loads(json.dumps(reg.manifests["library/tiny:1"]))
    manifest["layers"][0]["digest"] = bad
    reg.manifests["library/evil:1"] = manifest
    with pytest.raises(PullError, match="invalid manifest"):
        pull(store, reg, "library/evil:1")
    assert_nothing_outside(store, canary)
    assert store.list() == []


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda m: m.update(layers=[]), "exactly one GGUF"),
        (lambda m: m["layers"].pop(0), "exactly one GGUF"),
        (lambda m: m["layers"][0].update(size=-1), "invalid manifest"),
        (lambda m: m["layers"][0].update(mediaType="application/vnd.ollama.image.tensor"), "cannot use"),
        (lambda m: m.update(config="nope"), "invalid manifest"),
    ],
)
def test_malformed_manifests_are_refused(
    store: ModelStore, reg: FakeRegistry, change: object, error: str
) -> None:
    manifest = json.loads(json.dumps(reg.manifests["library/tiny:1"]))
    change(manifest)  # type: ignore[operator]
    reg.manifests["library/odd:1"] = manifest
    with pytest.raises(PullError, match=error):
        pull(store, reg, "library/odd:1")
    assert store.list() == []


def test_sizes_that_lie_are_refused(store: ModelStore, reg: FakeRegistry, gguf: bytes) -> None:
    manifest = json.loads(json.dumps(reg.manifests["library/tiny:1"]))
    manifest["layers"][0]["size"] = len(gguf) - 10
    reg.manifests["library/small:1"] = manifest
    with pytest.raises(IntegrityError, match="larger than the manifest"):
        pull(store, reg, "library/small:1")
    manifest["layers"][0]["size"] = len(gguf) + 10
    reg.manifests["library/big:1"] = manifest
    with pytest.raises(IntegrityError):
        pull(store, reg, "library/big:1")
    assert store.list() == []


def test_gzip_bomb_manifest_stops_at_the_cap(store: ModelStore, reg: FakeRegistry) -> None:
    reg.gzip_bomb_manifest = True
    with pytest.raises(PullError, match="larger than"):
        pull(store, reg)


def test_foreign_token_realm_is_never_contacted(store: ModelStore, reg: FakeRegistry) -> None:
    foreign = FakeRegistry()
    foreign.start()
    try:
        reg.realm = f"{foreign.url}/token"
        with pytest.raises(PullError, match="another host"):
            pull(store, reg)
        assert foreign.requests == []
    finally:
        foreign.stop()


def test_cross_host_redirect_never_carries_the_token(
    store: ModelStore, reg: FakeRegistry, gguf: bytes
) -> None:
    cdn = FakeRegistry(blobs=dict(reg.blobs))
    cdn.start()
    try:
        reg.redirect_blobs_to = cdn.url
        pull(store, reg)
        assert cdn.requests and all("authorization" not in h for _, h in cdn.requests)
        assert store.blobs.path(digest(gguf)).read_bytes() == gguf
    finally:
        cdn.stop()


def test_allowed_hosts(store: ModelStore, reg: FakeRegistry) -> None:
    with pytest.raises(InvalidRequest, match="SLM_ALLOWED_HOSTS"):
        pull(store, reg, allowed_hosts=("registry.example",))
    assert reg.requests == []
    pull(store, reg, allowed_hosts=(reg.host,))


def test_redirect_to_a_host_not_allowed_is_refused(store: ModelStore, reg: FakeRegistry) -> None:
    cdn = FakeRegistry(blobs=dict(reg.blobs))
    cdn.start()
    try:
        reg.redirect_blobs_to = cdn.url.replace("127.0.0.1", "localhost")
        with pytest.raises(InvalidRequest, match="SLM_ALLOWED_HOSTS"):
            pull(store, reg, allowed_hosts=(reg.host,))
        assert cdn.requests == []
    finally:
        cdn.stop()


def test_concurrent_pulls_of_one_model(store: ModelStore, reg: FakeRegistry) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            pull(store, reg)
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [r.name.model for r in store.list()] == ["tiny"]
    for name in ("a", "b"):
        assert all(problem is None for _, problem in store.verify(f"{reg.host}/library/tiny:1")), name
    assert not list(store.blobs.dir.glob("*-partial"))


def test_disk_full_is_a_clean_error(
    store: ModelStore, reg: FakeRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(registry_module.os, "fsync", full)
    with pytest.raises(StoreError, match="disk full"):
        pull(store, reg)
    assert store.list() == []
    monkeypatch.undo()
    pull(store, reg)
    assert len(store.list()) == 1


def test_unknown_model_and_unreachable_registry(store: ModelStore, reg: FakeRegistry) -> None:
    with pytest.raises(PullError, match="not found"):
        pull(store, reg, "library/nope:1")
    with RegistryClient(store, private=True) as client, pytest.raises(PullError, match="could not reach"):
        client.pull(ModelName.parse("127.0.0.1:9/library/x:1"), insecure=True)


def test_a_corrupt_blob_is_repaired_by_pulling_again(store: ModelStore, reg: FakeRegistry) -> None:
    record = pull(store, reg)
    path = record.model_path  # type: ignore[attr-defined]
    path.chmod(0o644)
    path.write_bytes(b"X" + path.read_bytes()[1:])
    assert any(problem for _, problem in store.verify(record.name))  # type: ignore[attr-defined]
    pull(store, reg)
    assert all(problem is None for _, problem in store.verify(record.name))  # type: ignore[attr-defined]


def test_default_registry_setting(store: ModelStore, reg: FakeRegistry) -> None:
    with RegistryClient(store, private=True) as client:
        record = client.pull(ModelName.parse("library/tiny:1"), insecure=True, default_registry=reg.host)
    assert record.name.display == "tiny:1"  # stored under the short name, fetched from SLM_REGISTRY


def test_a_vision_model_pulls_with_its_projector_layer(
    store: ModelStore, reg: FakeRegistry, gguf: bytes, tmp_path: Path
) -> None:
    projector = write_tiny_gguf(tmp_path / "p.gguf", arch="clip", template=None).read_bytes()
    reg.add_model("library/vlm:1", gguf, [("application/vnd.ollama.image.projector", projector)])
    record = pull(store, reg, "library/vlm:1")
    assert record.projector is not None and record.projector.read_bytes() == projector  # type: ignore[attr-defined]
    # a projector layer that is not a vision projector GGUF is refused, nothing is stored
    reg.add_model("library/bad:1", gguf, [("application/vnd.ollama.image.projector", gguf)])
    with pytest.raises(PullError, match="not a vision projector"):
        pull(store, reg, "library/bad:1")
    assert not store.exists(ModelName.parse(f"{reg.host}/library/bad:1"))
