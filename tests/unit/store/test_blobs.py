from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slmkit.errors import IntegrityError, InvalidDigest
from slmkit.store.blobs import BlobStore, parse_digest

HEX = "a" * 64


@pytest.mark.parametrize(
    "text",
    [f"sha256:{HEX}", f"sha256-{HEX}"],
)
def test_parse_digest_valid(text: str) -> None:
    assert parse_digest(text) == f"sha256:{HEX}"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sha256:",
        f"sha256:{HEX[:-1]}",
        f"sha256:{HEX}a",
        f"sha512:{HEX}",
        f"SHA256:{HEX}",
        f"sha256:{HEX.upper()}",
        "sha256:../../canary",
        f"sha256:{HEX}%2f..",
        f"sha256:{HEX}\x00",
        f"sha256:{HEX[:-2]}/.",
        f" sha256:{HEX}",
        f"sha256:{HEX}\n",
    ],
)
def test_parse_digest_invalid(text: str) -> None:
    with pytest.raises(InvalidDigest):
        parse_digest(text)


@given(st.text(max_size=80))
def test_blob_path_never_escapes(text: str) -> None:
    store = BlobStore(Path("/store"))
    try:
        path = store.path(text)
    except InvalidDigest:
        return
    assert path.parent == Path("/store/blobs")


@given(st.binary(max_size=4096))
def test_write_bytes_is_content_addressed(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store = BlobStore(Path(tmp))
        digest = store.write_bytes(data)
        assert digest == "sha256:" + hashlib.sha256(data).hexdigest()
        assert store.path(digest).read_bytes() == data
        assert store.write_bytes(data) == digest  # idempotent


def test_interrupted_write_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)

    def chunks() -> Iterator[bytes]:
        yield b"x" * 1000
        raise KeyboardInterrupt  # the process is told to stop mid-write

    with pytest.raises(KeyboardInterrupt):
        store.write_chunks(chunks())
    assert list(store.dir.iterdir()) == []


def test_digest_mismatch_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(IntegrityError, match="digest mismatch"):
        store.write_chunks([b"hello"], expected=f"sha256:{HEX}")
    assert list(store.dir.iterdir()) == []


def test_verify_detects_corruption(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.write_bytes(b"hello world")
    store.verify(digest)
    path = store.path(digest)
    path.chmod(0o644)
    path.write_bytes(b"hello World")
    with pytest.raises(IntegrityError, match="corrupt"):
        store.verify(digest)


def test_digests_skips_temp_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    digest = store.write_bytes(b"a")
    (store.dir / ".partial-xyz").write_bytes(b"junk")
    assert store.digests() == [digest]
