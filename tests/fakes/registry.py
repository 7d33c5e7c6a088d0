"""A fake Ollama registry speaking the real protocol, with switches for every attack.

    /v2/<ns>/<model>/manifests/<tag>   Docker v2 manifest (401 + WWW-Authenticate when auth is on)
    /v2/<ns>/<model>/blobs/<digest>    the blob, with Range
    /token                             {"token": ...}

It runs on 127.0.0.1 in a thread (http.server), records every request, and can misbehave:
corrupt or truncated blobs, lying sizes, gzip bombs, foreign token realms, cross-host
redirects, hand-written manifests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "registry-token-123"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class FakeRegistry:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)  # "ns/model:tag" -> manifest
    require_auth: bool = False
    realm: str | None = None  # token realm URL; default this server's /token
    corrupt: set[str] = field(default_factory=set)  # digests served with a flipped byte
    cut_after: dict[str, int] = field(
        default_factory=dict
    )  # digest -> bytes sent before the connection drops (once)
    gzip_bomb_manifest: bool = False
    redirect_blobs_to: str | None = None  # base URL of another server to redirect blob GETs to
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def add_model(
        self, name: str, gguf: bytes, extra: list[tuple[str, bytes]] | None = None
    ) -> dict[str, Any]:
        config = json.dumps({"model_format": "gguf", "model_family": "llama", "file_type": "Q4_1"}).encode()
        layers = [("application/vnd.ollama.image.model", gguf), *(extra or [])]
        self.blobs[digest(config)] = config
        for _, data in layers:
            self.blobs[digest(data)] = data
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [{"mediaType": m, "digest": digest(d), "size": len(d)} for m, d in layers],
        }
        self.manifests[name] = manifest
        return manifest

    # -- server ----------------------------------------------------------------------------
    def start(self) -> str:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                registry.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                registry.handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        if path == "/token":
            return self._send(h, 200, json.dumps({"token": TOKEN}).encode(), "application/json")
        if (
            self.require_auth
            and h.headers.get("Authorization") != f"Bearer {TOKEN}"
            and "/manifests/" in path
        ):
            realm = self.realm or f"{self.url}/token"
            return self._send(
                h,
                401,
                b"{}",
                "application/json",
                {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake",scope="pull"'},
            )
        parts = path.strip("/").split("/")
        if len(parts) >= 5 and parts[0] == "v2" and parts[-2] == "manifests":
            key = f"{'/'.join(parts[1:-2])}:{parts[-1]}"
            manifest = self.manifests.get(key)
            if manifest is None:
                return self._send(h, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', "application/json")
            body = json.dumps(manifest).encode()
            if self.gzip_bomb_manifest:
                body = gzip.compress(b'{"schemaVersion": 2, "layers": [' + b" " * (64 * 1024 * 1024) + b"]}")
                return self._send(h, 200, body, "application/json", {"Content-Encoding": "gzip"})
            return self._send(h, 200, body, "application/vnd.docker.distribution.manifest.v2+json")
        if len(parts) >= 5 and parts[0] == "v2" and parts[-2] == "blobs":
            wanted = parts[-1]
            if self.redirect_blobs_to:
                return self._send(
                    h, 307, b"", "text/plain", {"Location": f"{self.redirect_blobs_to}/cdn/{wanted}"}
                )
            return self.serve_blob(h, wanted)
        if len(parts) == 2 and parts[0] == "cdn":
            return self.serve_blob(h, parts[1])
        return self._send(h, 404, b"not found", "text/plain")

    def serve_blob(self, h: BaseHTTPRequestHandler, wanted: str) -> None:
        data = self.blobs.get(wanted)
        if data is None:
            return self._send(h, 404, b"", "text/plain")
        if wanted in self.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        start = 0
        rng = h.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
        body = data[start:]
        status = 206 if start else 200
        headers = {"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"} if start else {}
        cut = self.cut_after.pop(wanted, None)
        if cut is not None:  # send part of it, then drop the connection
            h.send_response(status)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(body)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body[:cut])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(2)
            return
        return self._send(h, status, body, "application/octet-stream", headers)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler, status: int, body: bytes, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", kind)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
