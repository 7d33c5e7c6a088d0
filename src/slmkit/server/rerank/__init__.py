"""Reranking (llama.cpp's, vLLM's and Jina/Cohere's shape), at the root and under /v1."""

from __future__ import annotations

from slmkit.server.family import Family


def family() -> Family:
    from slmkit.server.rerank.router import router

    return Family("rerank", (router(""), router("/v1")))
