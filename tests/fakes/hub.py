"""A fake Hugging Face Hub speaking what ``huggingface_hub`` calls, for pull tests.

    GET  /api/models/<org>/<repo>[/revision/<rev>]     model info with siblings (git blob id, LFS sha256)
    HEAD /<org>/<repo>/resolve/<rev>/<file>            ETag, X-Repo-Commit, X-Linked-Etag/Size
    GET  /<org>/<repo>/resolve/<rev>/<file>            the bytes, with Range

Switches: drop the connection mid-file once, serve other bytes of the right size, report
no sha256. Every request is recorded (path, headers).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

COMMIT = "0123456789abcdef0123456789abcdef01234567"
LFS = (".gguf", ".onnx", ".onnx.data")  # files the fake keeps in LFS (sha256); others in git (blob id)


@dataclass
class FakeHub:
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # repo -> {filename: bytes}
    # filename -> bytes sent before the connection drops, one entry per GET (then whole files)
    cut_after: dict[str, list[int]] = field(default_factory=dict)
    wrong_bytes: set[str] = field(default_factory=set)  # filenames served with other bytes
    no_sha: set[str] = field(default_factory=set)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def start(self) -> str:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path, {k.lower(): v for k, v in self.headers.items()}))
                hub.handle(self, body=True)

            def do_HEAD(self) -> None:
                hub.requests.append(("HEAD", self.path, {k.lower(): v for k, v in self.headers.items()}))
                hub.handle(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = h.path.split("?")[0]
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo = f"{parts[2]}/{parts[3]}"
            if repo not in self.files:
                return self._send(h, 404, b'{"error":"Repository not found"}', "application/json", body=body)
            siblings = []
            for name, data in self.files[repo].items():
                blob = hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
                entry: dict[str, Any] = {"rfilename": name, "size": len(data), "blobId": blob}
                if name.endswith(LFS) and name not in self.no_sha:
                    entry["lfs"] = {
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "size": len(data),
                        "pointerSize": 134,
                    }
                siblings.append(entry)
            info = {
                "id": repo,
                "modelId": repo,
                "sha": COMMIT,
                "siblings": siblings,
                "private": False,
                "tags": ["gguf"],
            }
            return self._send(h, 200, json.dumps(info).encode(), "application/json", body=body)
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, filename = f"{parts[0]}/{parts[1]}", "/".join(parts[4:])
            data = self.files.get(repo, {}).get(filename)
            if data is None:
                return self._send(h, 404, b"", "text/plain", {"X-Error-Code": "EntryNotFound"}, body=body)
            etag = hashlib.sha256(data).hexdigest()
            if filename in self.wrong_bytes:
                data = bytes(len(data))
            headers = {
                "ETag": f'"{etag}"',
                "X-Repo-Commit": COMMIT,
                "X-Linked-Etag": f'"{etag}"',
                "X-Linked-Size": str(len(data)),
                "Accept-Ranges": "bytes",
            }
            if not body:
                return self._send(
                    h,
                    200,
                    b"",
                    "application/octet-stream",
                    {**headers, "Content-Length": str(len(data))},
                    body=False,
                    length=len(data),
                )
            start = 0
            rng = h.headers.get("Range")
            if rng and rng.startswith("bytes="):
                start = int(rng[6:].split("-")[0])
            chunk = data[start:]
            status = 206 if start else 200
            if start:
                headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
            cuts = self.cut_after.get(filename)
            cut = cuts.pop(0) if cuts else None
            if cut is not None:
                h.send_response(status)
                for k, v in {
                    **headers,
                    "Content-Length": str(len(chunk)),
                    "Content-Type": "application/octet-stream",
                }.items():
                    h.send_header(k, v)
                h.end_headers()
                h.wfile.write(chunk[:cut])
                h.wfile.flush()
                h.close_connection = True
                h.connection.shutdown(2)
                return
            return self._send(h, status, chunk, "application/octet-stream", headers, body=True)
        return self._send(h, 404, b"", "text/plain", body=body)

    @staticmethod
    def _send(
        h: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        kind: str,
        headers: dict[str, str] | None = None,
        *,
        body: bool,
        length: int | None = None,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", kind)
        headers = dict(headers or {})
        headers.setdefault("Content-Length", str(len(data) if length is None else length))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if body:
            h.wfile.write(data)
