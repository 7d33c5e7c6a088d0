"""The front door: every check a request passes before any route sees it.

In order: the Origin of browser requests (403: only loopback pages, the server's own origin
and SLM_ORIGINS; a browser's state-changing request must carry a JSON Content-Type, which a
page cannot send cross-origin without a CORS preflight), draining for shutdown (503), Host
header when bound to loopback (403, against DNS rebinding), API key and scope (401/403),
per-key rate limit (429), body size (413) and time (408), JSON nesting depth (400). Bodies are then read as
JSON whatever their Content-Type (non-browser clients: ``curl -d '{...}'`` works, as with
Ollama). Refusals use the dialect's error shape.

Authentication fails closed: it is on when the server starts with keys or with
SLM_REQUIRE_KEYS, turns on when keys appear, and never turns off while the server runs.
An empty, missing or unreadable keys file then refuses every request (with a log line).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import socket
from typing import Any
from urllib.parse import urlsplit

from slmkit.config import is_loopback
from slmkit.errors import (
    BodyTooLarge,
    BodyTooSlow,
    Draining,
    Forbidden,
    HostNotAllowed,
    LimitExceeded,
    OriginNotAllowed,
    RateLimited,
    SlmError,
    Unauthenticated,
)
from slmkit.security.jsondepth import json_depth_exceeds
from slmkit.server import context, errors
from slmkit.server.state import ServerState

log = logging.getLogger("slmkit.server")
PUBLIC = {"/health", "/ready", "/metrics/load"}  # /metrics/load: three load gauges, no secrets
STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
JSON_TYPES = ("application/json", "application/x-ndjson")
ADMIN_PATHS = (
    "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/blobs", "/api/keys",
    "/api/stop",
)  # fmt: skip
METRICS_PATHS = ("/metrics",)
OFF_LOOP_BYTES = 64 * 1024  # bodies above this are depth-scanned in a thread
UPLOAD_OVERHEAD = 64 * 1024  # a multipart upload's boundaries and small fields, beyond the file
INFERENCE = frozenset({"inference"})
ADMIN = frozenset({"admin"})
METRICS = frozenset({"metrics"})


def required_scope(path: str) -> frozenset[str]:
    """Which key scopes may call ``path`` (admin keys may call everything)."""
    if path.startswith(ADMIN_PATHS):
        return ADMIN
    if path.startswith(METRICS_PATHS):
        return METRICS
    return INFERENCE


def local_host(host: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether a Host header names this machine through loopback: ``localhost``,
    ``*.localhost`` (RFC 6761: always loopback), a loopback address, this machine's name, or
    a name the operator added (``SLM_LOCAL_HOSTS``: exact names, or ``*.suffix``). Unlike
    Ollama, ``*.local`` and ``*.internal`` are not local by default: an mDNS or internal DNS
    name can be made to point anywhere, which is what DNS rebinding needs."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:].partition("]")[0]
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    name = name.rstrip(".")  # "localhost." is the same name
    if name in {"localhost", socket.gethostname().lower()} or name.endswith(".localhost"):
        return True
    for allowed in extra:
        if (allowed.startswith("*.") and name.endswith(allowed[1:])) or name == allowed:
            return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def loopback_origin(origin: str) -> bool:
    """Whether a browser Origin is a page served from this machine's loopback."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    name = parts.hostname.lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_origin(
    headers: dict[bytes, bytes], method: str, allowed: tuple[str, ...], scheme: str, *, json_body: bool = True
) -> None:
    """Refuse browser requests from pages of foreign origins, and (``json_body``) state-changing
    browser requests that a page could send without a preflight (a non-JSON Content-Type)."""
    origin = headers.get(b"origin", b"").decode("latin-1").strip()
    host = headers.get(b"host", b"").decode("latin-1").strip().lower()
    same = bool(origin) and origin.lower().rstrip("/") == f"{scheme}://{host}"
    if origin and not (same or loopback_origin(origin) or origin.rstrip("/") in allowed):
        raise OriginNotAllowed(f"origin not allowed: {origin[:100]!r} (allow it with SLM_ORIGINS)")
    browser = bool(origin) or b"sec-fetch-mode" in headers
    if json_body and browser and method in STATE_CHANGING and not same:
        kind = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
        has_body = headers.get(b"content-length", b"0") not in (b"0", b"") or b"transfer-encoding" in headers
        if has_body and not (kind in JSON_TYPES or kind.endswith("+json")):
            raise OriginNotAllowed(
                "a browser request that changes state must send Content-Type: application/json "
                f"(got {kind or 'none'!r})"
            )


class Guard:
    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state
        self.loopback = is_loopback(state.config.host)
        self.auth = state.config.require_keys  # decided at start; only ever turns on
        try:
            self.auth = self.auth or bool(state.keys.keys())
        except SlmError:
            self.auth = True  # an unreadable keys file at start: closed, not open
        self._warned = False

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            self._check(scope)
        except SlmError as refusal:
            await self._refuse(scope, send, refusal)
            return
        if scope["path"].startswith("/api/blobs/"):  # streamed to disk while hashing, any size
            await self.app(scope, receive, send)
            return
        if _upload(scope):  # multipart, streamed to a file by the route, within SLM_FILE_MAX_BYTES
            try:
                capped = self._capped_upload(receive, dict(scope.get("headers") or []).get(b"content-length"))
            except SlmError as refusal:
                await self._refuse(scope, send, refusal)
                return
            await self.app(scope, capped, send)
            return
        headers = [(k, v) for k, v in scope.get("headers") or [] if k != b"content-type"]
        scope = {**scope, "headers": [*headers, (b"content-type", b"application/json")]}
        try:
            body = await self._read_body(receive, dict(headers).get(b"content-length"))
        except SlmError as refusal:
            await self._refuse(scope, send, refusal)
            return
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return dict(await receive())

        await self.app(scope, replay, send)

    def _check(self, scope: Any) -> None:
        path = scope["path"]
        state = self.state
        raw: dict[bytes, bytes] = dict(scope.get("headers") or [])
        scheme = scope.get("scheme", "http")
        blob = path.startswith("/api/blobs/") or _upload(scope)  # not JSON; the Origin rule still holds
        check_origin(raw, scope["method"], state.config.origins, scheme, json_body=not blob)
        if state.draining and path not in PUBLIC:
            raise Draining("the server is shutting down")
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if self.loopback and host and not local_host(host, state.config.local_hosts):
            raise HostNotAllowed("host not allowed: this server only answers to local names")
        page = path in {"/", "/ui"} or path.startswith("/ui/")  # static: "is running", the chat page
        if path in PUBLIC or page or scope["method"] == "OPTIONS":
            return  # /ui: the chat page's static files; the page itself sends the key
        self._keys()
        if not self.auth:
            return
        token = _token(scope)
        key = state.keys.verify(token) if token else None
        if key is None:
            raise Unauthenticated("a valid API key is required" if token else "an API key is required")
        ctx = context.current.get()
        if ctx is not None:
            ctx.key = key
        needed = required_scope(path)
        if not key.allows(needed):  # no path in the message: error messages never carry one
            wanted = " or ".join(sorted(needed))
            raise Forbidden(f"this key's scope ({key.scope}) does not allow this route (it needs: {wanted})")
        wait = state.limiter.admit(key)
        if wait > 0:
            raise RateLimited("rate limit exceeded for this key", retry_after=max(1, math.ceil(wait)))

    def _keys(self) -> list[Any]:
        """The keys now; turns auth on for good once there are any. With auth on, a keys
        file that is empty or unreadable refuses everything rather than opening up."""
        try:
            keys = self.state.keys.keys()
        except SlmError as exc:
            if not self.auth:
                raise
            self._warn(f"{exc}; refusing every request until it is fixed")
            raise Unauthenticated("no API keys can be read on this server") from exc
        if keys:
            self.auth, self._warned = True, False
        elif self.auth:
            self._warn("the keys file has no keys but authentication is on; refusing every request")
        return keys

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.error(message)

    def _capped_upload(self, receive: Any, declared: bytes | None) -> Any:
        """``receive`` that refuses a /v1/files body past the file limit (and its form's
        few headers), as it arrives: the route sees BodyTooLarge, answered with 413."""
        limit = self.state.config.file_max_bytes + UPLOAD_OVERHEAD
        too_large = BodyTooLarge(
            f"file is larger than the limit of {self.state.config.file_max_bytes} bytes (SLM_FILE_MAX_BYTES)"
        )
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        size = 0

        async def capped() -> dict[str, Any]:
            nonlocal size
            message = dict(await receive())
            size += len(message.get("body", b""))
            if size > limit:
                raise too_large
            return message

        return capped

    async def _read_body(self, receive: Any, declared: bytes | None) -> bytes:
        """The whole body within its size and time limits, its JSON depth checked (off the
        event loop when large: a scan of megabytes would stall every other request)."""
        config = self.state.config
        limit = config.max_body_bytes
        too_large = BodyTooLarge(
            f"request body is larger than the limit of {limit} bytes (SLM_MAX_BODY_BYTES)"
        )
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        try:
            async with asyncio.timeout(config.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] != "http.request":
                        break
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    chunks.append(chunk)
                    if not message.get("more_body"):
                        break
        except TimeoutError as exc:
            raise BodyTooSlow(
                f"request body did not arrive within {config.body_timeout:g} s (SLM_BODY_TIMEOUT)"
            ) from exc
        body = b"".join(chunks)
        depth = config.max_json_depth
        deep = (
            await asyncio.to_thread(json_depth_exceeds, body, depth)
            if len(body) > OFF_LOOP_BYTES
            else json_depth_exceeds(body, depth)
        )
        if deep:
            raise LimitExceeded(f"request body nests JSON deeper than {depth} levels (SLM_MAX_JSON_DEPTH)")
        return body

    async def _refuse(self, scope: Any, send: Any, refusal: SlmError) -> None:
        response = errors.response_for(scope["path"], refusal, door=True)
        await response({"type": "http"}, _disconnected, send)


def _upload(scope: Any) -> bool:
    return bool(scope["path"] == "/v1/files" and scope["method"] == "POST")


def _token(scope: Any) -> str | None:
    headers: dict[bytes, bytes] = dict(scope.get("headers") or [])
    auth = headers.get(b"authorization", b"").decode("latin-1").strip()
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    return api_key or None


async def _disconnected() -> dict[str, Any]:
    return {"type": "http.disconnect"}
