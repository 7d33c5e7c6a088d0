"""Content-addressed blobs: ``<root>/blobs/sha256-<hex>``.

Every digest that names a file goes through :func:`parse_digest`, the one validator, so a
digest from a manifest, a registry or a request can never become a path outside the store
(Ollama CVE-2024-37032). Writes stream into a temp file in the same directory while
hashing, are verified, fsynced and renamed into place: a half-written blob is never visible.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from slmkit.errors import IntegrityError, InvalidDigest, StoreError

_DIGEST = re.compile(r"sha256[:-]([0-9a-f]{64})")
CHUNK = 1024 * 1024


def parse_digest(text: str) -> str:
    """Return the canonical ``sha256:<hex>`` form of ``text`` or raise InvalidDigest.

    Accepts ``sha256:<hex>`` and the file-name form ``sha256-<hex>``; hex must be lowercase.
    """
    if not isinstance(text, str):
        raise InvalidDigest("digest must be a string")
    match = _DIGEST.fullmatch(text)
    if match is None:
        raise InvalidDigest("invalid digest: expected 'sha256:' followed by 64 lowercase hex digits")
    return f"sha256:{match.group(1)}"


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def sha256_file(path: Path) -> str:
    """Digest of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return f"sha256:{h.hexdigest()}"


class BlobStore:
    """Blobs under ``root/blobs``; the only code that turns a digest into a path."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "blobs"
        self._verified: dict[str, tuple[int, int]] = {}  # digest -> (size, mtime_ns) last verified

    def path(self, digest: str) -> Path:
        """Path of the blob named ``digest`` (validated; the file may not exist)."""
        return self.dir / parse_digest(digest).replace(":", "-")

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self.path(digest).stat().st_size

    def write_bytes(self, data: bytes) -> str:
        """Store ``data``; return its digest. Idempotent."""
        return self.write_chunks([data])

    def write_file(self, source: Path) -> str:
        """Copy a regular file into the store while hashing it; return its digest."""
        try:
            with source.open("rb") as fh:
                return self.write_stream(fh)
        except OSError as exc:
            raise StoreError(f"could not read model file: {exc.strerror}") from exc

    def write_stream(self, stream: BinaryIO, expected: str | None = None) -> str:
        return self.write_chunks(iter(lambda: stream.read(CHUNK), b""), expected)

    def write_chunks(self, chunks: Iterable[bytes], expected: str | None = None) -> str:
        """Hash ``chunks`` into a temp file, verify against ``expected``, rename into place."""
        want = parse_digest(expected) if expected is not None else None
        with self._staged() as (fh, tmp):
            h = hashlib.sha256()
            for chunk in chunks:
                h.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
            digest = f"sha256:{h.hexdigest()}"
            if want is not None and digest != want:
                raise IntegrityError(f"digest mismatch: expected {want}, got {digest}")
            target = self.path(digest)
            if not target.exists() or sha256_file(target) != digest:  # absent, or a corrupt copy to repair
                os.chmod(tmp, 0o444)
                os.replace(tmp, target)
            self._verified[digest] = _stamp(target)
        return digest

    @contextmanager
    def _staged(self) -> Iterator[tuple[BinaryIO, Path]]:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".partial-", dir=self.dir)
        except OSError as exc:
            raise StoreError(f"could not write to the model store: {exc.strerror}") from exc
        tmp = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh, tmp
        except OSError as exc:
            raise StoreError(f"could not write to the model store: {exc.strerror}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def verify(self, digest: str) -> None:
        """Re-hash a stored blob; raise IntegrityError when its bytes changed."""
        path = self.path(digest)
        if not path.is_file():
            raise IntegrityError(f"blob {parse_digest(digest)} is missing")
        stamp = _stamp(path)
        actual = sha256_file(path)
        if actual != parse_digest(digest):
            raise IntegrityError(
                f"blob {parse_digest(digest)} is corrupt (it hashes to {actual}); "
                "pull or import the model again"
            )
        self._verified[digest] = stamp

    def check(self, digest: str) -> None:
        """Verify a blob unless it is unchanged since its last verification in this process
        (size and mtime): cheap before every load, yet a changed file is always re-hashed."""
        path = self.path(digest)
        try:
            stamp = _stamp(path)
        except OSError as exc:
            raise IntegrityError(f"blob {parse_digest(digest)} is missing") from exc
        if self._verified.get(digest) != stamp:
            self.verify(digest)

    def digests(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        out = []
        for p in self.dir.iterdir():
            try:
                out.append(parse_digest(p.name))
            except InvalidDigest:
                continue
        return out

    def remove(self, digest: str) -> None:
        self.path(digest).unlink(missing_ok=True)
