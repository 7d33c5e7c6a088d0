"""vLLM's tokenizer endpoints, at the root and under /v1."""

from __future__ import annotations

from slmkit.server.family import Family


def family() -> Family:
    from slmkit.server.tokenizer.router import router

    return Family("tokenizer", (router(""), router("/v1")))
