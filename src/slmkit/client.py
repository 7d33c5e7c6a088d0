"""A typed HTTP client for a running slmkit server (the CLI uses it too).

    client = Client()                                    # SLM_HOST, default 127.0.0.1:11435
    for chunk in client.chat("smollm2:135m", [{"role": "user", "content": "Hi"}], stream=True):
        print(chunk.text, end="")

Transport errors become ServerUnavailable; error answers become ClientError with the
server's message and status code.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from slmkit.config import Config
from slmkit.errors import ClientError, ServerUnavailable
from slmkit.results import Chunk, Completion


def _completion(model: str, text: str, data: dict[str, Any]) -> Completion:
    return Completion(
        text=text,
        finish_reason=str(data.get("done_reason", "stop")),
        model=str(data.get("model", model)),
        prompt_tokens=int(data.get("prompt_eval_count", 0)),
        completion_tokens=int(data.get("eval_count", 0)),
        prompt_eval_seconds=data.get("prompt_eval_duration", 0) / 1e9,
        eval_seconds=data.get("eval_duration", 0) / 1e9,
        load_seconds=data.get("load_duration", 0) / 1e9,
        total_seconds=data.get("total_duration", 0) / 1e9,
    )


class Client:
    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 600.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        config = Config.from_env()
        self.base_url = base_url or config.base_url
        key = config.api_key if api_key is None else api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=headers
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing -------------------------------------------------------------------------
    def _tls_problem(self, exc: Exception) -> ServerUnavailable | None:
        """A server that answers, but not in the TLS this client expects: say which way."""
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            return ServerUnavailable(
                f"the server at {self.base_url} has a TLS certificate this machine does not trust "
                "(self-signed?): set SSL_CERT_FILE to the certificate (or the CA that signed it)"
            )
        if self.base_url.startswith("https://") and "WRONG_VERSION_NUMBER" in str(exc):
            return ServerUnavailable(
                f"the server at {self.base_url} does not speak TLS: use http:// in SLM_HOST"
            )
        return None

    def _unavailable(self, exc: Exception) -> ServerUnavailable:
        return self._tls_problem(exc) or ServerUnavailable(
            f"no slmkit server at {self.base_url} (start one with `slm serve`)"
        )

    @staticmethod
    def _raise_for(response: httpx.Response) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.json()
            error = body.get("error")
            message = error.get("message") if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            message = None
        raise ClientError(str(message or f"server answered {response.status_code}"), response.status_code)

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        self._raise_for(response)
        return response

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        try:
            with self._http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    self._raise_for(response)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    data = json.loads(line)
                    if "error" in data:
                        raise ClientError(str(data["error"]), 500)
                    yield data
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc

    # -- generation -----------------------------------------------------------------------
    def _generate(
        self, path: str, key: str, body: dict[str, Any], stream: bool
    ) -> Completion | Iterator[Chunk]:
        if not stream:
            data = self._request("POST", path, {**body, "stream": False}).json()
            text = data["message"]["content"] if key == "message" else data["response"]
            return _completion(body["model"], text, data)
        return self._chunks(path, key, body)

    def _chunks(self, path: str, key: str, body: dict[str, Any]) -> Iterator[Chunk]:
        parts: list[str] = []
        thoughts: list[str] = []
        for data in self._stream(path, {**body, "stream": True}):
            part = data.get("message", {}) if key == "message" else data
            text = part.get("content", "") if key == "message" else part.get("response", "")
            thinking = part.get("thinking") or ""
            parts.append(text)
            thoughts.append(thinking)
            done = None
            if data.get("done"):
                done = dataclasses.replace(
                    _completion(body["model"], "".join(parts), data), thinking="".join(thoughts)
                )
            yield Chunk(text, done, thinking)

    def chat(
        self,
        model: str,
        messages: list[dict[str, Any]],
        *,
        stream: bool = False,
        options: dict[str, Any] | None = None,
        keep_alive: str | float | None = None,
        format: str | dict[str, Any] | None = None,
        think: bool | str | None = None,
    ) -> Any:
        """Chat; a Completion, or with ``stream=True`` an iterator of Chunk. ``format``: "json"
        or a JSON schema; ``think``: True/False, or an effort ("low", "medium", "high")."""
        body: dict[str, Any] = {"model": model, "messages": messages}
        if options:
            body["options"] = options
        if format is not None:
            body["format"] = format
        if think is not None:
            body["think"] = think
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return self._generate("/api/chat", "message", body, stream)

    def generate(
        self,
        model: str,
        prompt: str,
        *,
        system: str | None = None,
        stream: bool = False,
        options: dict[str, Any] | None = None,
        keep_alive: str | float | None = None,
    ) -> Any:
        body: dict[str, Any] = {"model": model, "prompt": prompt}
        if system is not None:
            body["system"] = system
        if options:
            body["options"] = options
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        return self._generate("/api/generate", "response", body, stream)

    def embed(self, model: str, texts: str | list[str]) -> list[list[float]]:
        data = self._request("POST", "/api/embed", {"model": model, "input": texts}).json()
        embeddings: list[list[float]] = data["embeddings"]
        return embeddings

    # -- management -----------------------------------------------------------------------
    def health(self) -> bool:
        try:
            return self._http.get("/health", timeout=2.0).status_code == 200
        except httpx.TransportError as exc:  # a TLS mismatch is not "no server": say it
            problem = self._tls_problem(exc)
            if problem is not None:
                raise problem from exc
            return False

    def version(self) -> str:
        return str(self._request("GET", "/api/version").json()["version"])

    def list(self) -> builtins.list[dict[str, Any]]:
        models: builtins.list[dict[str, Any]] = self._request("GET", "/api/tags").json()["models"]
        return models

    def ps(self) -> builtins.list[dict[str, Any]]:
        models: builtins.list[dict[str, Any]] = self._request("GET", "/api/ps").json()["models"]
        return models

    def show(self, model: str) -> dict[str, Any]:
        data: dict[str, Any] = self._request("POST", "/api/show", {"model": model}).json()
        return data

    def plan(self, model: str, options: dict[str, Any] | None = None) -> dict[str, Any]:
        """What loading ``model`` would do on the server now (``POST /api/plan``); ``options``:
        num_ctx, num_parallel to plan with instead of the model's and the server's."""
        body: dict[str, Any] = {"model": model, **({"options": options} if options else {})}
        data: dict[str, Any] = self._request("POST", "/api/plan", body).json()
        return data

    def delete(self, model: str) -> None:
        self._request("DELETE", "/api/delete", {"model": model})

    def copy(self, source: str, destination: str) -> None:
        self._request("POST", "/api/copy", {"source": source, "destination": destination})

    def load(self, model: str, keep_alive: str | float | None = None) -> None:
        body: dict[str, Any] = {"model": model, "stream": False}
        if keep_alive is not None:
            body["keep_alive"] = keep_alive
        self._request("POST", "/api/generate", body)

    def pull(self, model: str, *, insecure: bool = False) -> Iterator[dict[str, Any]]:
        """Progress objects of a pull, ending with ``{"status": "success"}``."""
        yield from self._stream("/api/pull", {"model": model, "insecure": insecure, "stream": True})

    def has_blob(self, digest: str) -> bool:
        try:
            response = self._http.head(f"/api/blobs/{digest}")
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        return response.status_code == 200

    def upload_blob(self, path: Path) -> str:
        """Upload a file (unless the server has it); returns its digest."""
        from slmkit.store.blobs import sha256_file

        digest = sha256_file(path)
        if self.has_blob(digest):
            return digest

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while block := fh.read(1024 * 1024):
                    yield block

        try:
            response = self._http.post(f"/api/blobs/{digest}", content=chunks())
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from exc
        self._raise_for(response)
        return digest

    def create(self, model: str, **fields: Any) -> dict[str, Any]:
        """Ollama's JSON create: from=..., files={name: digest}, system=..., parameters=..."""
        body = {"model": model, "stream": False, **{k: v for k, v in fields.items() if v is not None}}
        data: dict[str, Any] = self._request("POST", "/api/create", body).json()
        return data

    def stop(self, model: str, *, force: bool = False) -> None:
        """Unload a model once its requests in flight finish (Ollama's keep_alive=0); with
        ``force`` at once, cutting them (``/api/stop``, an admin key)."""
        if force:
            self._request("POST", "/api/stop", {"model": model, "force": True})
        else:
            self._request("POST", "/api/generate", {"model": model, "keep_alive": 0, "stream": False})
