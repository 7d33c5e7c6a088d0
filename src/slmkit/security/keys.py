"""API keys: random secrets shown once, stored only as SHA-256 hashes, with a scope.

    slm-<43 url-safe characters>      (256 random bits after a recognisable prefix)

The keys file (``SLM_KEYS_FILE``, default ``<SLM_MODELS>/keys.json``, mode 0600) holds, per
key: a short public id (for ``slm keys revoke``), a name, the scope, optional rate limits,
and the hash. For high-entropy random keys a plain SHA-256 is the right hash: slow hashes
are for human passwords. Verification hashes the presented token once and compares it in
constant time with every stored hash, with no early exit.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from slmkit.errors import InvalidRequest, NotFound, StoreError

SCOPES = ("inference", "admin", "metrics")
PREFIX = "slm-"


@dataclass(frozen=True)
class ApiKey:
    id: str  # public handle: first 12 hex digits of the hash
    name: str
    scope: str  # one of SCOPES; admin may do everything
    hash: str  # sha256 hex of the secret
    created: float  # Unix time
    rpm: int | None = None  # requests per minute, None = unlimited
    tpm: int | None = None  # tokens (prompt + generated) per minute

    def allows(self, needed: frozenset[str]) -> bool:
        return self.scope == "admin" or self.scope in needed


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", errors="surrogateescape")).hexdigest()


class KeyStore:
    """The keys file. Re-read when it changes on disk (``slm keys`` runs beside the server,
    or a Kubernetes Secret is updated), checked at most once per ``recheck`` seconds: a
    request costs no ``stat`` most of the time, and a key revoked by another process stops
    working within that second. What this store writes counts at once."""

    def __init__(
        self, path: Path, *, recheck: float = 1.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.path = path
        self.recheck = recheck
        self._clock = clock
        self._keys: list[ApiKey] = []
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of what we loaded
        self._checked: float | None = None  # when the file was last stat()ed

    def keys(self) -> list[ApiKey]:
        now = self._clock()
        if self._checked is not None and now - self._checked < self.recheck:
            return self._keys
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp, self._checked = [], None, now
            return []
        except OSError as exc:
            raise StoreError(f"could not read the keys file: {exc.strerror}") from exc
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._keys = self._read()
            self._stamp = stamp
        self._checked = now
        return self._keys

    def _forget(self) -> None:
        """Read the file afresh next time (we wrote it, or another process may have)."""
        self._stamp = self._checked = None

    def _read(self) -> list[ApiKey]:
        try:
            data = json.loads(self.path.read_text())
            return [ApiKey(**entry) for entry in data.get("keys", [])]
        except (OSError, ValueError, TypeError) as exc:
            raise StoreError("the keys file is unreadable or malformed") from exc

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[ApiKey]]:
        """The keys as on disk now, under an exclusive lock on ``<keys file>.lock``: concurrent
        ``slm keys`` commands (and servers) take turns, so none loses another's key."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                self._forget()  # read afresh: another process may have written
                yield list(self.keys())
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _write(self, keys: list[ApiKey]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)  # created 0600
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"keys": [asdict(k) for k in keys]}, fh, indent=2)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        os.chmod(self.path, 0o600)
        self._forget()

    def create(
        self, scope: str, name: str | None = None, rpm: int | None = None, tpm: int | None = None
    ) -> tuple[ApiKey, str]:
        """A new key; returns it and the secret, which is never stored or shown again."""
        if scope not in SCOPES:
            raise InvalidRequest(f"scope: must be one of {', '.join(SCOPES)}")
        for label, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and value < 1:
                raise InvalidRequest(f"{label}: must be a positive number")
        secret = PREFIX + secrets.token_urlsafe(32)
        hashed = digest(secret)
        key = ApiKey(
            id=hashed[:12],
            name=name or f"key-{hashed[:6]}",
            scope=scope,
            hash=hashed,
            created=time.time(),
            rpm=rpm,
            tpm=tpm,
        )
        with self._locked() as keys:
            self._write([*keys, key])
        return key, secret

    def revoke(self, ref: str) -> ApiKey:
        with self._locked() as keys:
            match = [k for k in keys if ref in (k.id, k.name)]
            if not match:
                raise NotFound(f"no key with id or name '{ref}'")
            self._write([k for k in keys if k not in match])
        return match[0]

    def verify(self, token: str) -> ApiKey | None:
        """The key whose secret is ``token``: constant time over all keys."""
        presented = digest(token)
        found: ApiKey | None = None
        for key in self.keys():
            if hmac.compare_digest(presented, key.hash) and found is None:
                found = key
        return found
