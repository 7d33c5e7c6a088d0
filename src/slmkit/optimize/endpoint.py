"""Quality measured where a model runs: a served model (slmkit, vLLM; any server with vLLM's
completions ``echo`` logprobs and ``/tokenize``) scored over HTTP. A server without them
(llama.cpp's server has no prompt logprobs) still answers golden suites.

Token log-probabilities come from ``/v1/completions`` with the prompt as token ids, ``echo``,
``logprobs: 0`` and ``max_tokens: 1`` (the one generated token is dropped; lm-eval asks the
same way, so servers that work with lm-eval work here). Tokens come from the server's
``/tokenize``. That is all perplexity and multiple choice need (evaluate.TokenScorer): the
numbers equal a local evaluation of the same weights. KL divergence needs whole
distributions, which no endpoint returns. Golden tests use ``/v1/chat/completions``, greedy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

from slmkit.errors import ClientError, ServerUnavailable
from slmkit.security.redact import redact_url


class Endpoint:
    """One model on one OpenAI-compatible server, as a TokenScorer and a chat function."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        n_ctx: int = 512,
        timeout: float = 600,
        transport: httpx.BaseTransport | None = None,  # tests: an in-process fake server
    ) -> None:
        base = url.rstrip("/")
        self.v1 = base if base.endswith("/v1") else f"{base}/v1"
        self.root = self.v1.removesuffix("/v1")
        self.label = f"{model} @ {redact_url(self.root)}"
        self.model = model
        self.n_ctx = n_ctx
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(headers=headers, timeout=timeout, transport=transport)
        self._bos: list[int] | None = None  # what the server's tokenizer puts first, asked once

    @property
    def add_bos(self) -> bool:
        return bool(self._bos_tokens())

    @property
    def bos(self) -> int:
        tokens = self._bos_tokens()
        return tokens[0] if tokens else -1

    def _bos_tokens(self) -> list[int]:
        if self._bos is None:
            self._bos = self.tokenize("", add_bos=True)
        return self._bos

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        try:
            r = self._http.post(url, json=body)
        except httpx.HTTPError as exc:
            raise ServerUnavailable(f"could not reach {redact_url(url)} ({type(exc).__name__})") from exc
        if r.status_code != 200:
            try:
                detail = r.json().get("error")
                detail = detail.get("message") if isinstance(detail, dict) else detail
            except ValueError:
                detail = r.text[:200]
            raise ClientError(f"{redact_url(url)} answered {r.status_code}: {detail}", r.status_code)
        return r.json()

    def tokenize(self, text: str, *, add_bos: bool | None = None) -> list[int]:
        """vLLM's /tokenize shape (slmkit's too); llama.cpp's server reads ``content`` instead,
        and answers the vLLM shape with no tokens: then its shape is tried."""
        special = True if add_bos is None else add_bos
        body = {"model": self.model, "prompt": text, "add_special_tokens": special}
        tokens = self._post(f"{self.root}/tokenize", body).get("tokens")
        if text and tokens == []:
            tokens = self._post(f"{self.root}/tokenize", {"content": text, "add_special": special}).get(
                "tokens"
            )
        if not isinstance(tokens, list) or (text and not tokens):
            raise ClientError(f"{redact_url(self.root)}/tokenize: no token list in the answer")
        return [int(t) for t in tokens]

    def score(self, tokens: Sequence[int]) -> np.ndarray:
        body = {
            "model": self.model,
            "prompt": [list(tokens)],
            "echo": True,
            "logprobs": 0,
            "max_tokens": 1,
            "temperature": 0,
        }
        answer = self._post(f"{self.v1}/completions", body)
        values = ((answer.get("choices") or [{}])[0].get("logprobs") or {}).get("token_logprobs") or []
        prompt = values[1 : len(tokens)]
        if len(prompt) != len(tokens) - 1 or any(v is None for v in prompt):
            raise ClientError(
                f"{redact_url(self.v1)}/completions: no prompt logprobs with echo (the server must "
                "support echo with logprobs, as vLLM and slmkit do)"
            )
        return np.asarray(prompt, dtype=np.float64)

    def chat(self, messages: list[dict[str, str]], max_tokens: int) -> str:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        answer = self._post(f"{self.v1}/chat/completions", body)
        return str(((answer.get("choices") or [{}])[0].get("message") or {}).get("content") or "")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
