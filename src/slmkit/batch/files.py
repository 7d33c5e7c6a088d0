"""Uploaded and produced files (OpenAI's ``/v1/files``): batch inputs, outputs, error files.

Layout under ``<SLM_MODELS>/files``: ``<id>`` holds the bytes and ``<id>.json`` the record;
a file exists once its record does. Bytes are written to a temporary file in the same
folder, fsynced, renamed, then the record is written the same way, so a crash leaves either
no file or a whole one (leftovers without a record are removed at start). Each file belongs
to the API key that made it (its id; "" when keys are off); another key sees nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

from slmkit.errors import BodyTooLarge, DiskFull, FileNotFound, LimitExceeded, StoreError

PURPOSES = ("batch", "batch_output", "user_data")
UPLOAD_PURPOSES = ("batch", "user_data")  # what a client may upload
_CHUNK = 1 << 20
RESERVE = 512 << 20  # free bytes an upload must leave on the disk (the models and logs need room)


@dataclass(frozen=True)
class FileRecord:
    id: str  # "file-" and 24 hex digits
    owner: str  # API key id ("" with keys off)
    filename: str  # as the client named it (display only, never a path)
    purpose: str
    bytes: int
    created_at: int  # Unix seconds

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


def clean_filename(name: str | None) -> str:
    """A display name: the last path part, no control characters, at most 255 characters."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C")
    return base[:255] or "upload.jsonl"


def is_file_id(value: str) -> bool:
    rest = value.removeprefix("file-")
    return rest != value and len(rest) == 24 and all(c in "0123456789abcdef" for c in rest)


class FileStore:
    def __init__(
        self, root: Path, max_bytes: int, max_files: int, free: Callable[[Path], int] | None = None
    ) -> None:
        self.root = root
        self.free = free or (lambda path: shutil.disk_usage(path).free)  # free bytes on its disk
        self.max_bytes = max_bytes  # largest file (SLM_FILE_MAX_BYTES)
        self.max_files = max_files  # files per owner (SLM_FILES_PER_KEY)
        self._lock = threading.Lock()  # record writes and counts (called from threads)
        self._cleaned = False

    # -- reading --------------------------------------------------------------------------
    def get(self, owner: str, file_id: str) -> FileRecord:
        """The record, or FileNotFound (also for another owner's file: the same answer)."""
        if not is_file_id(file_id):
            raise FileNotFound(f"no such file: {file_id[:64]}")
        try:
            data = json.loads((self.root / f"{file_id}.json").read_text())
            record = FileRecord(**data)
        except FileNotFoundError as exc:
            raise FileNotFound(f"no such file: {file_id}") from exc
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError(f"the record of file {file_id} cannot be read") from exc
        if record.owner != owner:
            raise FileNotFound(f"no such file: {file_id}")
        return record

    def path(self, owner: str, file_id: str) -> Path:
        """Where the bytes of the owner's file are (for reading)."""
        return self.root / self.get(owner, file_id).id

    def owned(self, owner: str, purpose: str | None = None) -> list[FileRecord]:
        """The owner's files, newest first."""
        return sorted(
            (r for r in self._records() if r.owner == owner and purpose in (None, r.purpose)),
            key=lambda r: (r.created_at, r.id),
            reverse=True,
        )

    def _records(self) -> Iterator[FileRecord]:
        if not self.root.is_dir():
            return
        for meta in self.root.glob("file-*.json"):
            try:
                yield FileRecord(**json.loads(meta.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # removed meanwhile, or damaged: not listed

    # -- writing --------------------------------------------------------------------------
    def create(self, owner: str, filename: str | None, purpose: str, src: BinaryIO) -> FileRecord:
        """Copy ``src`` in as a new file of ``owner``, within the size and count limits."""
        self._check_count(owner)
        tmp = self._temp()
        try:
            size = 0
            with open(tmp, "wb") as out:
                while chunk := src.read(_CHUNK):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise BodyTooLarge(
                            f"file is larger than the limit of {self.max_bytes} bytes (SLM_FILE_MAX_BYTES)"
                        )
                    if self.free(self.root) - len(chunk) < RESERVE:
                        raise DiskFull("the server's disk is nearly full: the file was not stored")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            return self._commit(tmp, owner, clean_filename(filename), purpose, size)
        except OSError as exc:
            raise StoreError(f"could not store the file: {exc.strerror}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def adopt(self, owner: str, src: Path, filename: str, purpose: str, file_id: str) -> FileRecord:
        """Move a finished file (a batch's output) in as ``file_id`` of ``owner`` (not
        counted against the owner's limit: a job's results are always kept)."""
        try:
            return self._commit(src, owner, filename, purpose, src.stat().st_size, file_id)
        except OSError as exc:
            raise StoreError(f"could not store the file: {exc.strerror}") from exc

    def delete(self, owner: str, file_id: str) -> None:
        record = self.get(owner, file_id)
        with self._lock:
            (self.root / f"{record.id}.json").unlink(missing_ok=True)  # gone from this moment
            (self.root / record.id).unlink(missing_ok=True)

    def _check_count(self, owner: str) -> None:
        """Uploads count against the limit; a job's results (``batch_output``) do not."""
        uploads = sum(1 for r in self._records() if r.owner == owner and r.purpose in UPLOAD_PURPOSES)
        if uploads >= self.max_files:
            raise LimitExceeded(f"this key has {self.max_files} files, the limit (SLM_FILES_PER_KEY)")

    def _temp(self) -> Path:
        self._clean_once()
        self.root.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".partial-", dir=self.root)
        os.close(fd)
        return Path(name)

    def _commit(
        self, src: Path, owner: str, filename: str, purpose: str, size: int, file_id: str | None = None
    ) -> FileRecord:
        self.root.mkdir(parents=True, exist_ok=True)
        file_id = file_id or f"file-{secrets.token_hex(12)}"
        record = FileRecord(file_id, owner, filename, purpose, size, int(time.time()))
        with self._lock:
            os.replace(src, self.root / record.id)
            write_json(self.root / f"{record.id}.json", asdict(record))
        return record

    def _clean_once(self) -> None:
        """Remove what a crash left: temporary files, and bytes whose record was never written."""
        if self._cleaned or not self.root.is_dir():
            return
        self._cleaned = True
        for path in self.root.iterdir():
            stale = path.name.startswith(".partial-") or (
                is_file_id(path.name) and not (self.root / f"{path.name}.json").exists()
            )
            if stale and path.is_file():
                path.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically: a temporary file in the same folder, fsynced, then renamed."""
    fd, tmp = tempfile.mkstemp(prefix=".partial-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
