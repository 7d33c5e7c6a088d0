"""Pulls from an Ollama-style registry: ``/v2/<ns>/<model>/manifests/<tag>`` and
``/v2/<ns>/<model>/blobs/<digest>``, with bearer tokens from a same-host realm.

Every defence a malicious registry has beaten before (SECURITY.md O1, O2, O10, O11, R1-R4):
digests pass the store's one validator before anything touches the disk; JSON bodies are
read up to a cap *after* decompression (a gzip bomb stops at the cap); a token realm on
another host is refused and never contacted; redirects are followed by hand, and the
Authorization header never leaves the registry's host; a blob must have exactly the size
the manifest declares and hash to its digest, or it is discarded; a download resumes from
its ``-partial`` file with ``Range``; the model layer must pass the GGUF validator; the
manifest is written last, atomically. Concurrent pulls of one blob serialize on a lock file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx
from pydantic import ValidationError

from slmkit.errors import IntegrityError, InvalidRequest, PullCancelled, PullError, StoreError, first_problem
from slmkit.names import DEFAULT_HOST, ModelName
from slmkit.store import egress
from slmkit.store.blobs import parse_digest, sha256_file
from slmkit.store.gguf_info import read_info
from slmkit.store.manifest import (
    MEDIA_LICENSE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_SYSTEM,
    MEDIA_TEMPLATE,
    Layer,
    Manifest,
)
from slmkit.store.store import ModelRecord, ModelStore

MAX_JSON = 4 * 1024 * 1024  # bytes of any JSON body (manifest, token), after decompression
MAX_REDIRECTS = 5
KNOWN_MEDIA = {
    MEDIA_MODEL,
    MEDIA_TEMPLATE,
    MEDIA_SYSTEM,
    MEDIA_PARAMS,
    MEDIA_LICENSE,
    "application/vnd.ollama.image.adapter",
    "application/vnd.ollama.image.messages",
    MEDIA_PROJECTOR,
}
ACCEPT = "application/vnd.docker.distribution.manifest.v2+json"


@dataclass(frozen=True)
class Progress:
    """One step of a pull, shaped like Ollama's progress objects."""

    status: str
    digest: str | None = None
    total: int | None = None  # bytes
    completed: int | None = None


ProgressFn = Callable[[Progress], None]


class RegistryClient:
    def __init__(
        self,
        store: ModelStore,
        *,
        allowed_hosts: tuple[str, ...] = (),
        private: bool = False,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        """``private``: may connect to private and loopback addresses (store/egress.py);
        ``transport`` replaces the guarded one (tests)."""
        self.store = store
        self.allowed_hosts = allowed_hosts
        self._http = httpx.Client(
            transport=transport or egress.transport(private=private), timeout=timeout, follow_redirects=False
        )
        self._token: str | None = None  # bearer token, sent to the first host of a request only
        self.cancelled = False  # set from another thread to stop between chunks

    def close(self) -> None:
        self._http.close()

    def use_token(self, token: str | None) -> None:
        self._token = token or None

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP with the guards ------------------------------------------------------------
    def _check_host(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        if (
            self.allowed_hosts
            and host not in self.allowed_hosts
            and urlsplit(url).netloc not in self.allowed_hosts
        ):
            raise InvalidRequest(f"registry host {host!r} is not in SLM_ALLOWED_HOSTS")

    @contextlib.contextmanager
    def _get(
        self, url: str, headers: dict[str, str] | None = None, *, auth: bool = True
    ) -> Iterator[httpx.Response]:
        """GET with manual redirects: the bearer token only ever goes to the first host."""
        origin = urlsplit(url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            self._check_host(url)
            sent = dict(headers or {})
            if auth and self._token and urlsplit(url).netloc == origin:
                sent["Authorization"] = f"Bearer {self._token}"
            try:
                request = self._http.build_request("GET", url, headers=sent)
                response = self._http.send(request, stream=True)
            except httpx.TransportError as exc:
                raise PullError(f"could not reach {urlsplit(url).hostname}") from exc  # one message for all
            if response.is_redirect and "location" in response.headers:
                response.close()
                url = urljoin(url, response.headers["location"])
                continue
            try:
                yield response
            finally:
                response.close()
            return
        raise PullError("too many redirects")

    @staticmethod
    def _json(response: httpx.Response, what: str) -> Any:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_JSON:
            raise PullError(f"{what} is larger than {MAX_JSON} bytes")
        body = bytearray()
        for chunk in response.iter_bytes():  # decoded bytes: a compressed bomb stops here
            body += chunk
            if len(body) > MAX_JSON:
                raise PullError(f"{what} is larger than {MAX_JSON} bytes")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise PullError(f"{what} is not valid JSON") from exc

    def _authenticate(self, challenge: str, registry_url: str) -> None:
        """Fetch a bearer token from the realm in ``WWW-Authenticate`` - same host only."""
        fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        realm = fields.pop("realm", "")
        if not challenge.lower().startswith("bearer") or not realm:
            raise PullError("the registry asked for an authentication scheme we do not support")
        ours, theirs = urlsplit(registry_url), urlsplit(realm)
        if (theirs.scheme, theirs.netloc) != (ours.scheme, ours.netloc):
            raise PullError(
                f"the registry's token realm is on another host ({theirs.netloc or realm!r}); "
                "refusing to send it anything"
            )
        query = urlencode({k: v for k, v in fields.items() if k in {"service", "scope"}})
        with self._get(f"{realm}?{query}" if query else realm, auth=False) as response:
            if response.status_code != 200:
                raise PullError(f"the registry's token endpoint answered {response.status_code}")
            token = self._json(response, "token response")
        value = token.get("token") or token.get("access_token") if isinstance(token, dict) else None
        if not isinstance(value, str) or not value:
            raise PullError("the registry's token response holds no token")
        self._token = value

    # -- pull ------------------------------------------------------------------------------
    def pull(
        self,
        name: ModelName,
        *,
        insecure: bool = False,
        progress: ProgressFn | None = None,
        default_registry: str = DEFAULT_HOST,
    ) -> ModelRecord:
        """Pull ``name`` into the store under that name. Names without a host are fetched
        from ``default_registry`` (SLM_REGISTRY)."""
        report = progress or (lambda p: None)
        scheme = "http" if insecure else "https"
        host = default_registry if name.host == DEFAULT_HOST else name.host
        base = f"{scheme}://{host}/v2/{name.namespace}/{name.model}"
        report(Progress("pulling manifest"))
        manifest = self._manifest(f"{base}/manifests/{name.tag}")
        for layer in [manifest.config, *manifest.layers]:
            self.fetch_blob(f"{base}/blobs/{layer.digest}", layer, report)
        report(Progress("verifying sha256 digest"))
        model = manifest.model_layer
        read_info(self.store.blobs.path(model.digest))  # the GGUF gate, before it is usable
        projector = manifest.layer(MEDIA_PROJECTOR)  # a vision model's: the same gate
        if (
            projector is not None
            and read_info(self.store.blobs.path(projector.digest)).architecture != "clip"
        ):
            raise PullError("the model's projector layer is not a vision projector GGUF")
        report(Progress("writing manifest"))
        self.store.write_manifest(name, manifest)
        record = self.store.get(name)
        report(Progress("success"))
        return record

    def _manifest(self, url: str) -> Manifest:
        for attempt in range(2):
            with self._get(url, {"Accept": ACCEPT}) as response:
                if response.status_code == 401 and attempt == 0:
                    self._authenticate(response.headers.get("www-authenticate", ""), url)
                    continue
                if response.status_code == 404:
                    raise PullError("model not found in the registry (check the name and tag)")
                if response.status_code != 200:
                    raise PullError(f"the registry answered {response.status_code} for the manifest")
                data = self._json(response, "manifest")
            break
        try:
            manifest = Manifest.model_validate(data)
        except ValidationError as exc:
            raise PullError(
                f"the registry sent an invalid manifest ({first_problem(exc.errors())[0]})"
            ) from exc
        for layer in manifest.layers:
            if layer.mediaType not in KNOWN_MEDIA:
                raise PullError(f"the model has a layer of a kind slmkit cannot use ({layer.mediaType})")
        if sum(1 for layer in manifest.layers if layer.mediaType == MEDIA_MODEL) != 1:
            raise PullError("the manifest must hold exactly one GGUF model layer")
        return manifest

    def fetch_blob(self, url: str, layer: Layer, report: ProgressFn) -> None:
        """Download ``url`` into the store as ``layer`` (resuming, size- and digest-checked);
        the Hub client uses it too."""
        digest = parse_digest(layer.digest)
        blobs = self.store.blobs
        short = digest.removeprefix("sha256:")[:12]
        with _locked(blobs.dir, digest):
            if blobs.exists(digest):
                try:
                    blobs.check(digest)
                    report(Progress(f"pulling {short}", digest, layer.size, layer.size))
                    return
                except IntegrityError:
                    pass  # a corrupt copy: download it again
            partial = blobs.path(digest).with_name(blobs.path(digest).name + "-partial")
            self._download(url, layer, partial, report, short)
            actual = sha256_file(partial)
            if actual != digest:
                partial.unlink(missing_ok=True)
                raise IntegrityError(f"digest mismatch for layer {short}: the registry sent other bytes")
            os.chmod(partial, 0o444)
            os.replace(partial, blobs.path(digest))
            blobs.check(digest)

    def _download(self, url: str, layer: Layer, partial: Path, report: ProgressFn, short: str) -> None:
        have = partial.stat().st_size if partial.exists() else 0
        if have > layer.size:
            partial.unlink()
            have = 0
        if have == layer.size:
            return
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._get(url, headers) as response:
            if response.status_code == 200:
                have = 0  # the server ignored Range: start over
            elif response.status_code != 206:
                raise PullError(f"the registry answered {response.status_code} for layer {short}")
            mode = "ab" if have else "wb"
            try:
                with partial.open(mode) as fh:
                    done = have
                    report(Progress(f"pulling {short}", layer.digest, layer.size, done))
                    for chunk in response.iter_raw():  # as received: a broken-off tail is kept
                        if self.cancelled:
                            raise PullCancelled("pull cancelled")
                        done += len(chunk)
                        if done > layer.size:
                            raise IntegrityError(
                                f"layer {short} is larger than the manifest says ({layer.size} bytes)"
                            )
                        fh.write(chunk)
                        report(Progress(f"pulling {short}", layer.digest, layer.size, done))
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise StoreError(
                        "disk full while pulling; free some space and pull again to resume"
                    ) from exc
                raise StoreError(f"could not write to the model store: {exc.strerror}") from exc
            except httpx.TransportError as exc:
                raise PullError(f"the download of layer {short} broke off; pull again to resume") from exc
        if done != layer.size:
            raise IntegrityError(f"layer {short} is {done} bytes, the manifest says {layer.size}; pull again")


@contextlib.contextmanager
def _locked(directory: Path, digest: str) -> Iterator[None]:
    """An exclusive lock per blob, across threads and processes."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f".lock-{parse_digest(digest).removeprefix('sha256:')}"
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
